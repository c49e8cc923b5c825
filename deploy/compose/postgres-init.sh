#!/usr/bin/env bash
# First start of the compose PostgreSQL: the control store `countersign` and a demo target
# database `orders` (target `prod` of policy.example.toml) with a small table. The executor's
# role may read and change rows, not the schema, and cannot reach the control store's tables.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v control_pw="$CONTROL_DB_PASSWORD" -v orders_pw="$ORDERS_DB_PASSWORD" <<'SQL'
CREATE ROLE countersign LOGIN PASSWORD :'control_pw';
CREATE DATABASE countersign OWNER countersign;
REVOKE ALL ON DATABASE countersign FROM PUBLIC;

CREATE ROLE orders_executor LOGIN PASSWORD :'orders_pw';
CREATE DATABASE orders;
REVOKE ALL ON DATABASE orders FROM PUBLIC;
GRANT CONNECT ON DATABASE orders TO orders_executor;
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname orders <<'SQL'
CREATE TABLE public.orders (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL,
    total       numeric(10, 2) NOT NULL,
    status      text NOT NULL DEFAULT 'open',
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.orders (email, total, status)
SELECT 'customer' || n || '@example.com', (n * 7.5)::numeric(10, 2),
       CASE WHEN n % 3 = 0 THEN 'shipped' ELSE 'open' END
FROM generate_series(1, 50) AS n;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO orders_executor;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO orders_executor;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO orders_executor;
SQL
