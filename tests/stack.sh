# stack.sh: start and stop a whole Capsule Gateway stack on 127.0.0.1 in one folder.
#
# Sourced (not run) by ./devstack and by the integration tests, so the local
# stack and the tested stack are started the same way. Every server binds to
# 127.0.0.1 only and keeps its data, logs, keys and pid files under
# $STACK_DIR. Callers set:
#   STACK_DIR   folder for all state (created if missing)
#   BUILD_DIR   build tree holding the programs (cgi-bin/capsule-gateway.fcgi, ...)
#   SRC_DIR     source tree (sql/, etc/)
# and may preset the ports (PG_PORT, REDIS_PORT, HTTP_PORT, WS_PORT, APNS_PORT,
# FCGI_PORT); unset ones get a free port. STACK_WEB picks the web server in
# front of the FastCGI program: lighttpd (default), apache or nginx. stack_up
# starts everything; stack_down stops everything recorded in $STACK_DIR/pids.

STACK_APNS_TEAM_ID=${STACK_APNS_TEAM_ID:-TEAM123456}
STACK_APNS_KEY_ID=${STACK_APNS_KEY_ID:-KEY1234567}
STACK_APNS_BUNDLE_ID=${STACK_APNS_BUNDLE_ID:-com.example.capsule}
STACK_FCGI_CHILDREN=${STACK_FCGI_CHILDREN:-2}
STACK_USED_PORTS=" "

stack_log() { printf '[stack] %s\n' "$*" >&2; }
stack_die() { printf '[stack] error: %s\n' "$*" >&2; return 1; }

# A TCP port on 127.0.0.1 that nothing listens on (and that this stack has
# not handed out yet). Taken below the kernel's ephemeral range when there is
# room: a client connection's port there (even one in TIME_WAIT, after the
# tests' many short requests) makes a server's bind fail although nothing
# listens on it.
stack_free_port() {
	local p i lo=20000 n=40000 eph
	eph=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	if [ -n "$eph" ] && [ "$eph" -gt 15000 ] 2>/dev/null; then
		lo=10000 n=$((eph - 10000))
	fi
	for i in $(seq 1 200); do
		p=$((lo + RANDOM % n))
		case "$STACK_USED_PORTS" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			STACK_USED_PORTS="$STACK_USED_PORTS$p "
			echo "$p"
			return 0
		fi
	done
	stack_die "no free port found"
}

# stack_wait_port PORT [SECONDS]: waits until something accepts on PORT.
stack_wait_port() {
	local port=$1 secs=${2:-20} i
	for i in $(seq 1 $((secs * 10))); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	stack_die "nothing listens on 127.0.0.1:$port after ${secs}s"
}

# Runs a command as the PostgreSQL user when we are root (initdb refuses root).
stack_as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

stack_pg_bindir() {
	local d
	d=$(pg_config --bindir 2>/dev/null)
	if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
	done
	stack_die "PostgreSQL server binaries (initdb) not found: apt-get install postgresql"
}

stack_record_pid() { # name pid
	mkdir -p "$STACK_DIR/pids"
	echo "$2" >>"$STACK_DIR/pids/$1.pid"
}

# Where the cluster lives: $STACK_DIR/pg, unless we are root and the postgres
# user cannot reach $STACK_DIR (a checkout under /root, say); then a folder in
# /tmp, remembered in $STACK_DIR/pg-dir.
stack_pg_dir() {
	if [ -f "$STACK_DIR/pg-dir" ]; then
		cat "$STACK_DIR/pg-dir"
	elif [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$STACK_DIR"; then
		mktemp -d "${TMPDIR:-/tmp}/capsule-pg.XXXXXX" | tee "$STACK_DIR/pg-dir"
	else
		echo "$STACK_DIR/pg"
	fi
}

stack_start_pg() {
	local bindir pgdir
	bindir=$(stack_pg_bindir) || return 1
	: "${PG_PORT:=$(stack_free_port)}"
	if [ "$(id -u)" = 0 ]; then
		chmod 755 "$STACK_DIR"
	fi
	pgdir=$(stack_pg_dir)
	mkdir -p "$pgdir"
	if [ "$(id -u)" = 0 ]; then
		chmod 755 "$pgdir"
		chown postgres: "$pgdir"
	fi
	if [ ! -f "$pgdir/data/PG_VERSION" ]; then
		stack_as_pg "$bindir/initdb" -D "$pgdir/data" -A trust -U postgres -E UTF8 \
			--locale=C.UTF-8 >"$STACK_DIR/initdb.log" 2>&1 ||
			{ cat "$STACK_DIR/initdb.log" >&2; stack_die "initdb failed"; return 1; }
	fi
	stack_as_pg "$bindir/pg_ctl" -D "$pgdir/data" -w -t 30 -l "$pgdir/postgres.log" \
		-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $pgdir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
		start >/dev/null || { cat "$pgdir/postgres.log" >&2; stack_die "PostgreSQL did not start"; return 1; }
	echo "$bindir" >"$STACK_DIR/pg-bindir"
	psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<-SQL || return 1
		SELECT 'CREATE ROLE capsule LOGIN CREATEDB CREATEROLE' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'capsule')\gexec
		SELECT 'CREATE DATABASE capsule OWNER capsule' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'capsule')\gexec
	SQL
	# The owner runs migrations and capsule-admin; the programs connect as
	# capsule_web, a member of capsule_app (made by stack_app_role after the
	# migrations), which owns nothing and is subject to row-level security.
	ADMIN_DATABASE_URL="postgresql://capsule@127.0.0.1:$PG_PORT/capsule"
	DATABASE_URL="postgresql://capsule_web@127.0.0.1:$PG_PORT/capsule"
	export ADMIN_DATABASE_URL DATABASE_URL
	stack_log "PostgreSQL on 127.0.0.1:$PG_PORT"
}

stack_stop_pg() {
	local pgdir
	[ -f "$STACK_DIR/pg-bindir" ] || return 0
	pgdir=$(stack_pg_dir)
	[ -f "$pgdir/data/postmaster.pid" ] || return 0
	stack_as_pg "$(cat "$STACK_DIR/pg-bindir")/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# Removes a cluster that stack_pg_dir put outside $STACK_DIR.
stack_remove_pg() {
	[ -f "$STACK_DIR/pg-dir" ] && rm -rf "$(cat "$STACK_DIR/pg-dir")"
	rm -f "$STACK_DIR/pg-dir"
}

stack_start_redis() {
	: "${REDIS_PORT:=$(stack_free_port)}"
	mkdir -p "$STACK_DIR/redis"
	# In the foreground as a background job: its pid is known (and recorded,
	# so stack_down stops it) even when it never comes up.
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$STACK_DIR/redis" --logfile "$STACK_DIR/redis/redis.log" --daemonize no &
	stack_record_pid redis $!
	stack_wait_port "$REDIS_PORT" || return 1
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
	export REDIS_URL
	stack_log "Redis on 127.0.0.1:$REDIS_PORT"
}

# Test keys, made fresh for each stack: an APNs .p8 signing key (and its
# public half for the fake APNs), and a CA with a server certificate for
# 127.0.0.1 so the push-daemon talks TLS to the fake as it would to Apple.
stack_make_keys() {
	local k="$STACK_DIR/keys"
	mkdir -p "$k"
	[ -f "$k/apns.p8" ] && return 0
	(
		cd "$k" || exit 1
		umask 077
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out apns.p8 &&
		openssl pkey -in apns.p8 -pubout -out apns-pub.pem &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj "/CN=Capsule Gateway test CA" -keyout ca.key -out ca.pem &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/CN=127.0.0.1" -keyout server.key -out server.csr &&
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext &&
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
			-extfile server.ext -out server.pem
	) >"$STACK_DIR/keys.log" 2>&1 || { cat "$STACK_DIR/keys.log" >&2; stack_die "making test keys failed"; return 1; }
	chmod 644 "$k/ca.pem"
}

stack_start_fake_apns() {
	: "${APNS_PORT:=$(stack_free_port)}"
	local bin="$BUILD_DIR/tests/tools/fake-apns"
	[ -x "$bin" ] || { stack_die "$bin not built"; return 1; }
	: >"$STACK_DIR/apns-requests.jsonl"
	: >"$STACK_DIR/apns-script.txt"
	"$bin" --port "$APNS_PORT" --cert "$STACK_DIR/keys/server.pem" --key "$STACK_DIR/keys/server.key" \
		--team-id "$STACK_APNS_TEAM_ID" --key-id "$STACK_APNS_KEY_ID" \
		--auth-key "$STACK_DIR/keys/apns-pub.pem" --bundle-id "$STACK_APNS_BUNDLE_ID" \
		--log "$STACK_DIR/apns-requests.jsonl" --script "$STACK_DIR/apns-script.txt" \
		>"$STACK_DIR/fake-apns.log" 2>&1 &
	stack_record_pid fake-apns $!
	stack_wait_port "$APNS_PORT" || return 1
	stack_log "fake APNs on https://127.0.0.1:$APNS_PORT"
}

# The fake Web Push service (tests/tools/fake-webpush): TLS on 127.0.0.1 with the
# same test CA as the fake APNs. Tests add subscriptions to webpush-subs.jsonl
# (`fake-webpush --make-subscription /push/NAME --port $WEBPUSH_PORT` prints the
# line for it and the browser's JSON) and script failures in webpush-script.txt;
# it re-reads both when they change. Requests: webpush-requests.jsonl.
stack_start_fake_webpush() {
	: "${WEBPUSH_PORT:=$(stack_free_port)}"
	local bin="$BUILD_DIR/tests/tools/fake-webpush"
	[ -x "$bin" ] || { stack_die "$bin not built"; return 1; }
	: >"$STACK_DIR/webpush-requests.jsonl"
	: >"$STACK_DIR/webpush-subs.jsonl"
	: >"$STACK_DIR/webpush-script.txt"
	"$bin" --port "$WEBPUSH_PORT" --cert "$STACK_DIR/keys/server.pem" --key "$STACK_DIR/keys/server.key" \
		--log "$STACK_DIR/webpush-requests.jsonl" --subscriptions "$STACK_DIR/webpush-subs.jsonl" \
		--script "$STACK_DIR/webpush-script.txt" >"$STACK_DIR/fake-webpush.log" 2>&1 &
	stack_record_pid fake-webpush $!
	stack_wait_port "$WEBPUSH_PORT" || return 1
	stack_log "fake Web Push service on https://127.0.0.1:$WEBPUSH_PORT"
}

# The gateway's VAPID key pair (capsule-admin vapid-keygen), made once per stack.
stack_make_vapid() {
	local f="$STACK_DIR/keys/vapid.conf"
	[ -f "$f" ] && return 0
	(umask 077; "$BUILD_DIR/sql/capsule-admin" vapid-keygen >"$f") ||
		{ stack_die "capsule-admin vapid-keygen failed"; return 1; }
	STACK_VAPID_PRIVATE=$(sed -n 's/^vapid_private_key = //p' "$f")
	STACK_VAPID_PUBLIC=$(sed -n 's/^vapid_public_key = //p' "$f")
	export STACK_VAPID_PUBLIC
}

# The login role the programs use, once the migrations made capsule_app; and
# the tenants the tests use besides 'default'.
stack_app_role() {
	psql -q -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d capsule -v ON_ERROR_STOP=1 >/dev/null <<-SQL || return 1
		SELECT 'CREATE ROLE capsule_web LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'capsule_web')\gexec
		GRANT capsule_app TO capsule_web;
		INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme'), ('globex', 'Globex') ON CONFLICT DO NOTHING;
	SQL
}

# Keys for Bearer JWTs in tests: an HS256 secret, an RSA key (kid rsa1) and
# an EC P-256 key (kid ec1).
stack_make_jwt_keys() {
	local k="$STACK_DIR/keys"
	mkdir -p "$k"
	[ -f "$k/jwt-ec.pem" ] && return 0
	(
		cd "$k" || exit 1
		umask 077
		openssl rand -hex 32 >"$STACK_DIR/jwt-hs256-secret" &&
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out jwt-rsa.pem &&
		openssl pkey -in jwt-rsa.pem -pubout -out jwt-rsa-pub.pem &&
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out jwt-ec.pem &&
		openssl pkey -in jwt-ec.pem -pubout -out jwt-ec-pub.pem
	) >>"$STACK_DIR/keys.log" 2>&1 || { cat "$STACK_DIR/keys.log" >&2; stack_die "making JWT keys failed"; return 1; }
	chmod 644 "$k"/jwt-*-pub.pem
}

# The gateway's config file, shared by the FastCGI program and both daemons.
stack_write_config() {
	: "${WS_PORT:=$(stack_free_port)}"
	local secret
	if [ -f "$STACK_DIR/ws-secret" ]; then
		secret=$(cat "$STACK_DIR/ws-secret")
	else
		secret=$(openssl rand -hex 32)
		(umask 077; echo "$secret" >"$STACK_DIR/ws-secret")
	fi
	WS_JWT_SECRET=$secret
	export WS_JWT_SECRET
	CAPSULE_CONFIG="$STACK_DIR/capsule-gateway.conf"
	export CAPSULE_CONFIG
	(umask 077; cat >"$CAPSULE_CONFIG") <<-EOF
		# Written by tests/stack.sh for a throwaway local stack.
		database_url = $DATABASE_URL
		admin_database_url = $ADMIN_DATABASE_URL
		redis_url = $REDIS_URL
		auth_jwt_hs256_secret = $(cat "$STACK_DIR/jwt-hs256-secret")
		auth_jwt_public_keys = rsa1=$STACK_DIR/keys/jwt-rsa-pub.pem,ec1=$STACK_DIR/keys/jwt-ec-pub.pem
		auth_jwt_issuer = https://auth.test.local
		auth_jwt_audience = capsule-gateway
		cors_allowed_origins = ${STACK_CORS_ORIGINS:-https://console.test.local}
		rate_limit_credential_per_minute = ${STACK_RATE_PER_MINUTE:-6000}
		rate_limit_credential_burst = ${STACK_RATE_BURST:-1000}
		rate_limit_tenant_overrides = ${STACK_RATE_OVERRIDES:-globex=60/5}
		ws_jwt_secret = $secret
		host = 127.0.0.1
		port = $WS_PORT
		apns_team_id = $STACK_APNS_TEAM_ID
		apns_key_id = $STACK_APNS_KEY_ID
		apns_key_path = $STACK_DIR/keys/apns.p8
		apns_bundle_id = $STACK_APNS_BUNDLE_ID
		apns_url = https://127.0.0.1:$APNS_PORT
		apns_ca_file = $STACK_DIR/keys/ca.pem
		vapid_private_key = $(sed -n 's/^vapid_private_key = //p' "$STACK_DIR/keys/vapid.conf")
		vapid_subject = mailto:ops@capsule.test
		webpush_ca_file = $STACK_DIR/keys/ca.pem
		instance_id = ${STACK_INSTANCE_PREFIX:-local}
		log_level = ${STACK_LOG_LEVEL:-info}
	EOF
}

stack_migrate() {
	"$BUILD_DIR/sql/capsule-migrate" -f "$CAPSULE_CONFIG" -s "$SRC_DIR/sql"
}

# The web server in front: STACK_WEB is lighttpd (the default), apache or
# nginx. Each includes the snippet shipped in etc/, so the tests exercise
# what we ship.
stack_web() {
	case "${STACK_WEB:-lighttpd}" in
	lighttpd | apache | nginx) echo "${STACK_WEB:-lighttpd}" ;;
	*) stack_die "STACK_WEB must be lighttpd, apache or nginx, not '$STACK_WEB'" ;;
	esac
}

# The FastCGI processes under spawn-fcgi. lighttpd (running as the caller)
# talks to them over a unix socket that only the caller may use; Apache and
# nginx hand requests to workers that run as www-data when started by root,
# so they talk to 127.0.0.1:$FCGI_PORT instead.
stack_start_fcgi() {
	local sock="$STACK_DIR/fcgi.sock" where
	rm -f "$sock" "$STACK_DIR/spawn-fcgi.pid"
	if [ "$(stack_web)" = lighttpd ]; then
		where=(-s "$sock" -M 0600)
	else
		: "${FCGI_PORT:=$(stack_free_port)}"
		where=(-a 127.0.0.1 -p "$FCGI_PORT")
	fi
	# spawn-fcgi points a forked child's stderr at /dev/null; the sh -c exec
	# re-opens it on fcgi.log (same pid) so logs and sanitizer reports survive.
	spawn-fcgi "${where[@]}" -F "$STACK_FCGI_CHILDREN" -P "$STACK_DIR/spawn-fcgi.pid" \
		-- /bin/sh -c 'exec "$@" 2>>"$0"' "$STACK_DIR/fcgi.log" \
		${STACK_FCGI_WRAPPER:-} "$BUILD_DIR/cgi-bin/capsule-gateway.fcgi" -f "$CAPSULE_CONFIG" \
		>>"$STACK_DIR/spawn-fcgi.log" 2>&1 || { cat "$STACK_DIR/spawn-fcgi.log" >&2; stack_die "spawn-fcgi failed"; return 1; }
	# spawn-fcgi's pid file keeps only one of the -F children; the config path
	# is unique to this stack, so it finds them all.
	local i n
	mkdir -p "$STACK_DIR/pids"
	for i in $(seq 1 50); do
		n=$(pgrep -f -c -- "capsule-gateway.fcgi -f $CAPSULE_CONFIG")
		[ "${n:-0}" -ge "$STACK_FCGI_CHILDREN" ] && break
		sleep 0.1
	done
	pgrep -f -- "capsule-gateway.fcgi -f $CAPSULE_CONFIG" >"$STACK_DIR/pids/fcgi.pid"
}

stack_start_lighttpd() {
	local www="$STACK_DIR/www"
	mkdir -p "$www"
	cat >"$STACK_DIR/lighttpd.conf" <<-EOC
		# Written by tests/stack.sh: the shipped snippet etc/lighttpd/capsule-gateway.conf
		# behind a minimal server on 127.0.0.1.
		server.document-root = "$www"
		server.bind = "127.0.0.1"
		server.port = $HTTP_PORT
		server.errorlog = "$STACK_DIR/lighttpd-error.log"
		server.pid-file = "$STACK_DIR/lighttpd.pid"
		server.modules = ("mod_access", "mod_accesslog", "mod_fastcgi", "mod_proxy")
		accesslog.filename = "$STACK_DIR/lighttpd-access.log"
		var.capsule_fcgi_socket = "$STACK_DIR/fcgi.sock"
		var.capsule_ws_host = "127.0.0.1"
		var.capsule_ws_port = $WS_PORT
		include "$SRC_DIR/etc/lighttpd/capsule-gateway.conf"
	EOC
	lighttpd -tt -f "$STACK_DIR/lighttpd.conf" >/dev/null || { stack_die "lighttpd config check failed"; return 1; }
	lighttpd -D -f "$STACK_DIR/lighttpd.conf" >>"$STACK_DIR/lighttpd-error.log" 2>&1 &
	stack_record_pid lighttpd $!
}

stack_apache_bin() {
	local b
	for b in apache2 httpd /usr/sbin/apache2 /usr/sbin/httpd; do
		command -v "$b" 2>/dev/null && return 0
	done
	stack_die "Apache httpd is not installed: apt-get install apache2"
}

stack_start_apache() {
	local bin mods=/usr/lib/apache2/modules m user=""
	bin=$(stack_apache_bin) || return 1
	[ -d "$mods" ] || mods=/usr/lib/httpd/modules
	mkdir -p "$STACK_DIR/apache-run"
	[ "$(id -u)" = 0 ] && user="User www-data
Group www-data"
	{
		echo "# Written by tests/stack.sh: the shipped snippet etc/apache/capsule-gateway.conf"
		echo "# behind a minimal server on 127.0.0.1."
		# (log_config and unixd are built into Debian's apache2)
		for m in mpm_event log_config unixd authn_core authz_core proxy proxy_fcgi proxy_wstunnel; do
			echo "<IfModule !${m}_module>"
			echo "LoadModule ${m}_module $mods/mod_$m.so"
			echo "</IfModule>"
		done
		cat <<-EOC
			ServerRoot "$STACK_DIR"
			ServerName 127.0.0.1
			Listen 127.0.0.1:$HTTP_PORT
			PidFile "$STACK_DIR/apache.pid"
			DefaultRuntimeDir "$STACK_DIR/apache-run"
			ErrorLog "$STACK_DIR/apache-error.log"
			LogLevel warn
			LogFormat "%h %l %u %t \"%r\" %>s %b %D" stack
			CustomLog "$STACK_DIR/apache-access.log" stack
			$user
			StartServers 1
			ServerLimit 4
			ThreadsPerChild 25
			MaxRequestWorkers 100
			MinSpareThreads 25
			MaxSpareThreads 75
			Define CAPSULE_FCGI "fcgi://127.0.0.1:$FCGI_PORT"
			Define CAPSULE_WS "ws://127.0.0.1:$WS_PORT"
			Include "$SRC_DIR/etc/apache/capsule-gateway.conf"
		EOC
	} >"$STACK_DIR/apache.conf"
	"$bin" -t -f "$STACK_DIR/apache.conf" >"$STACK_DIR/apache-check.log" 2>&1 ||
		{ cat "$STACK_DIR/apache-check.log" >&2; stack_die "apache config check failed"; return 1; }
	"$bin" -f "$STACK_DIR/apache.conf" -DFOREGROUND >>"$STACK_DIR/apache-error.log" 2>&1 &
	stack_record_pid apache $!
}

stack_start_nginx() {
	local tmp="$STACK_DIR/nginx-tmp" user=""
	command -v nginx >/dev/null 2>&1 || { stack_die "nginx is not installed: apt-get install nginx"; return 1; }
	mkdir -p "$tmp"
	[ "$(id -u)" = 0 ] && user="user www-data;"
	cat >"$STACK_DIR/nginx.conf" <<-EOC
		# Written by tests/stack.sh: the shipped snippet etc/nginx/capsule-gateway.conf
		# behind a minimal server on 127.0.0.1.
		$user
		worker_processes 2;
		pid $STACK_DIR/nginx.pid;
		error_log $STACK_DIR/nginx-error.log warn;
		events { worker_connections 256; }
		http {
			access_log $STACK_DIR/nginx-access.log;
			client_body_temp_path $tmp/body;
			fastcgi_temp_path $tmp/fastcgi;
			proxy_temp_path $tmp/proxy;
			scgi_temp_path $tmp/scgi;
			uwsgi_temp_path $tmp/uwsgi;
			upstream capsule_gateway_fcgi { server 127.0.0.1:$FCGI_PORT; }
			upstream capsule_gateway_ws { server 127.0.0.1:$WS_PORT; }
			server {
				listen 127.0.0.1:$HTTP_PORT;
				server_name 127.0.0.1;
				include $SRC_DIR/etc/nginx/capsule-gateway.conf;
			}
		}
	EOC
	nginx -t -q -p "$STACK_DIR" -c "$STACK_DIR/nginx.conf" >"$STACK_DIR/nginx-check.log" 2>&1 ||
		{ cat "$STACK_DIR/nginx-check.log" >&2; stack_die "nginx config check failed"; return 1; }
	nginx -p "$STACK_DIR" -c "$STACK_DIR/nginx.conf" -g 'daemon off;' >>"$STACK_DIR/nginx-error.log" 2>&1 &
	stack_record_pid nginx $!
}

# FastCGI processes under spawn-fcgi, the chosen web server in front.
stack_start_web() {
	local web
	web=$(stack_web) || return 1
	: "${HTTP_PORT:=$(stack_free_port)}"
	stack_start_fcgi || return 1
	"stack_start_$web" || return 1
	if ! stack_wait_port "$HTTP_PORT"; then
		tail -n 20 "$STACK_DIR/$web-error.log" >&2
		return 1
	fi
	stack_log "$web on http://127.0.0.1:$HTTP_PORT (FastCGI x$STACK_FCGI_CHILDREN${FCGI_PORT:+ on 127.0.0.1:$FCGI_PORT})"
}

# Stops whichever web server this stack runs.
stack_stop_web() {
	local s
	for s in lighttpd apache nginx; do
		stack_stop "$s"
	done
}

stack_start_wsd() {
	${STACK_DAEMON_WRAPPER:-} "$BUILD_DIR/ws-daemon/capsule-wsd" -d -f "$CAPSULE_CONFIG" \
		>>"$STACK_DIR/capsule-wsd.log" 2>&1 &
	stack_record_pid capsule-wsd $!
	stack_wait_port "$WS_PORT" || return 1
	stack_log "capsule-wsd on ws://127.0.0.1:$WS_PORT/ws"
}

stack_start_pushd() {
	${STACK_DAEMON_WRAPPER:-} "$BUILD_DIR/push-daemon/capsule-pushd" -d -f "$CAPSULE_CONFIG" \
		>>"$STACK_DIR/capsule-pushd.log" 2>&1 &
	stack_record_pid capsule-pushd $!
	stack_log "capsule-pushd started"
}

# Everything, in dependency order.
stack_up() {
	mkdir -p "$STACK_DIR" || return 1
	stack_start_pg || return 1
	stack_start_redis || return 1
	stack_make_keys || return 1
	stack_make_jwt_keys || return 1
	stack_start_fake_apns || return 1
	stack_make_vapid || return 1
	stack_start_fake_webpush || return 1
	stack_write_config || return 1
	stack_migrate >"$STACK_DIR/migrate.log" 2>&1 || { cat "$STACK_DIR/migrate.log" >&2; stack_die "migration failed"; return 1; }
	stack_app_role || { stack_die "creating the application role failed"; return 1; }
	stack_start_wsd || return 1
	stack_start_pushd || return 1
	stack_start_web || return 1
	cat >"$STACK_DIR/env" <<-EOF
		PG_PORT=$PG_PORT
		REDIS_PORT=$REDIS_PORT
		HTTP_PORT=$HTTP_PORT
		WS_PORT=$WS_PORT
		APNS_PORT=$APNS_PORT
		WEBPUSH_PORT=$WEBPUSH_PORT
		STACK_WEB=$(stack_web)
		FCGI_PORT=${FCGI_PORT:-}
		DATABASE_URL=$DATABASE_URL
		ADMIN_DATABASE_URL=$ADMIN_DATABASE_URL
		REDIS_URL=$REDIS_URL
		CAPSULE_CONFIG=$CAPSULE_CONFIG
	EOF
}

# stack_up, retried with fresh ports: a port found free can still be taken by
# another stack (make check runs the suites in parallel) before our server
# binds it. Ports the caller preset are kept.
stack_up_retry() {
	local try preset=""
	for v in PG_PORT REDIS_PORT HTTP_PORT WS_PORT APNS_PORT WEBPUSH_PORT FCGI_PORT; do
		[ -n "${!v:-}" ] && preset="$preset $v"
	done
	for try in 1 2 3; do
		stack_up && return 0
		stack_down
		stack_remove_pg
		rm -rf "${STACK_DIR:?}/pg" "$STACK_DIR/pids" "$STACK_DIR"/*.log
		for v in PG_PORT REDIS_PORT HTTP_PORT WS_PORT APNS_PORT WEBPUSH_PORT FCGI_PORT; do
			case " $preset " in *" $v "*) ;; *) unset "$v" ;; esac
		done
		stack_log "stack start failed (try $try); retrying on other ports"
	done
	return 1
}

# Stops one recorded service: TERM, then KILL after a grace period.
stack_stop() { # name
	local f="$STACK_DIR/pids/$1.pid" pid i alive
	[ -f "$f" ] || return 0
	while read -r pid; do
		[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
	done <"$f"
	for i in $(seq 1 50); do
		alive=0
		while read -r pid; do
			[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
		done <"$f"
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	while read -r pid; do
		[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	done <"$f"
	rm -f "$f"
}

stack_down() {
	local s
	[ -n "${STACK_DIR:-}" ] && [ -d "$STACK_DIR" ] || return 0
	for s in lighttpd apache nginx fcgi capsule-pushd capsule-wsd fake-apns fake-webpush redis; do
		stack_stop "$s"
	done
	stack_stop_pg
	rm -f "$STACK_DIR/env"
}
