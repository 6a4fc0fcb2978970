#!/usr/bin/env bash
# Installs what ferry's demo, tests and benchmarks need on a fresh Debian machine:
# PostgreSQL 15 server binaries (initdb, pg_ctl, psql), MariaDB (mariadbd, mariadb-install-db,
# mariadb), Redis (redis-server, redis-cli), curl, and Chromium with ChromeDriver. Idempotent; needs root for apt-get.
set -euo pipefail

need_postgres() {
  ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1
}

need_mariadb() {
  ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ] \
    || ! command -v mariadb-install-db >/dev/null 2>&1 || ! command -v mariadb >/dev/null 2>&1
}

need_redis() {
  ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1
}

packages=()
# curl: the README's examples of `ferry serve` (a test runs them as written).
if ! command -v curl >/dev/null 2>&1; then packages+=(curl); fi
# Chromium and ChromeDriver: the status page's test in a real browser.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  packages+=(chromium chromium-driver)
fi
if need_postgres; then packages+=(postgresql postgresql-client); fi
if need_mariadb; then packages+=(mariadb-server mariadb-client); fi
if need_redis; then packages+=(redis-server redis-tools); fi
if [ ${#packages[@]} -gt 0 ]; then
  echo "setup: installing ${packages[*]} (Debian packages) …"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # Debian's packages would start servers of their own; ferry starts private ones instead.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
if ! command -v runuser >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "setup: runuser (util-linux) is needed to run PostgreSQL as an unprivileged user" >&2
  exit 1
fi
