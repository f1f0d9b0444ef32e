#!/bin/sh
# Regenerate the autotools build (configure, Makefile.in, aux files).
set -e
cd "$(dirname "$0")"
autoreconf -fi
