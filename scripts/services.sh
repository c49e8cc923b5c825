#!/usr/bin/env bash
# Makes sure the services the integration tests use are running on loopback:
#   PostgreSQL 127.0.0.1:5432 (user postgres, trust auth), MariaDB 127.0.0.1:3306 (root, empty
#   password) and redis-server (tests start private Redis servers of their own as well), and that
#   Chromium and ChromeDriver are installed for the console's browser test.
# Starts a stopped service; installs a missing one with apt-get (Debian/Ubuntu, needs root or
# sudo). Tests can point elsewhere with COUNTERSIGN_TEST_POSTGRES, COUNTERSIGN_TEST_MYSQL and
# COUNTERSIGN_TEST_REDIS; then this script checks nothing for that service.
set -euo pipefail

say() { printf 'services: %s\n' "$*" >&2; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() {
    local port=$1 name=$2
    for _ in $(seq 1 150); do listening "$port" && return 0; sleep 0.2; done
    say "$name did not start listening on 127.0.0.1:$port"; return 1
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    say "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
    [ -n "${COUNTERSIGN_TEST_POSTGRES:-}" ] && return 0
    listening 5432 && return 0
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    # Trust auth on loopback, as the tests expect of a throwaway test server.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    say "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for 5432 PostgreSQL
}

ensure_mariadb() {
    [ -n "${COUNTERSIGN_TEST_MYSQL:-}" ] && return 0
    listening 3306 && return 0
    command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
    say "starting MariaDB"
    as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_for 3306 MariaDB
    # Root over TCP with an empty password, as on the development machines.
    as_root mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;" 2>/dev/null || true
}

ensure_redis() {
    command -v redis-server >/dev/null || apt_install redis-server
    [ -n "${COUNTERSIGN_TEST_REDIS:-}" ] && return 0
    listening 6379 && return 0
    say "starting Redis"
    as_root mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for 6379 Redis
}

# The console's browser test drives Debian's Chromium through ChromeDriver.
ensure_browser() {
    [ -n "${COUNTERSIGN_TEST_CHROMEDRIVER:-}" ] && return 0
    command -v chromedriver >/dev/null && command -v chromium >/dev/null && return 0
    apt_install chromium chromium-driver
}

ensure_postgres
ensure_mariadb
ensure_redis
ensure_browser
say "PostgreSQL, MariaDB, Redis, Chromium and ChromeDriver are ready"
