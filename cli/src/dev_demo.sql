-- The demo target of `countersign dev`: a small shop.
PRAGMA journal_mode = WAL;

CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    country TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    created_at TEXT NOT NULL
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    expires_at TEXT NOT NULL
);

INSERT INTO customers (id, name, email, country, created_at) VALUES
    (1, 'Ada Lovelace', 'ada.lovelace@example.com', 'IN', '2026-03-22'),
    (2, 'Grace Hopper', 'grace.hopper@example.com', 'GB', '2026-02-27'),
    (3, 'Alan Turing', 'alan.turing@example.com', 'US', '2026-06-28'),
    (4, 'Edsger Dijkstra', 'edsger.dijkstra@example.com', 'GB', '2026-09-16'),
    (5, 'Barbara Liskov', 'barbara.liskov@example.com', 'GB', '2026-02-23'),
    (6, 'Donald Knuth', 'donald.knuth@example.com', 'JP', '2026-02-17'),
    (7, 'Margaret Hamilton', 'margaret.hamilton@example.com', 'US', '2026-09-23'),
    (8, 'Ken Thompson', 'ken.thompson@example.com', 'GB', '2026-02-17'),
    (9, 'Frances Allen', 'frances.allen@example.com', 'GB', '2026-07-11'),
    (10, 'John Backus', 'john.backus@example.com', 'DE', '2026-01-27'),
    (11, 'Radia Perlman', 'radia.perlman@example.com', 'NL', '2026-05-23'),
    (12, 'Leslie Lamport', 'leslie.lamport@example.com', 'NL', '2026-09-13');
INSERT INTO products (id, sku, name, price_cents) VALUES
    (1, 'KB-01', 'Mechanical keyboard', 8900),
    (2, 'MS-02', 'Wireless mouse', 2900),
    (3, 'MN-27', '27-inch monitor', 27900),
    (4, 'DK-10', 'USB-C dock', 15900),
    (5, 'HS-05', 'Headset', 6900),
    (6, 'CB-03', 'Cable pack', 1500);
INSERT INTO orders (id, customer_id, product_id, quantity, status, created_at) VALUES
    (1, 10, 3, 3, 'cancelled', '2026-11-06 09:37:00'),
    (2, 10, 6, 1, 'paid', '2026-11-04 16:45:00'),
    (3, 2, 5, 1, 'shipped', '2026-11-07 15:43:00'),
    (4, 9, 4, 2, 'shipped', '2026-11-19 15:23:00'),
    (5, 5, 2, 1, 'cancelled', '2026-11-08 09:36:00'),
    (6, 5, 5, 2, 'paid', '2026-11-15 12:38:00'),
    (7, 2, 1, 3, 'shipped', '2026-11-06 20:21:00'),
    (8, 3, 4, 2, 'pending', '2026-11-22 09:48:00'),
    (9, 9, 5, 2, 'paid', '2026-11-12 17:31:00'),
    (10, 10, 4, 1, 'pending', '2026-11-09 15:44:00'),
    (11, 11, 1, 1, 'cancelled', '2026-11-10 18:36:00'),
    (12, 11, 4, 2, 'cancelled', '2026-11-13 18:22:00'),
    (13, 1, 4, 2, 'paid', '2026-11-20 09:31:00'),
    (14, 1, 2, 2, 'paid', '2026-11-08 14:25:00'),
    (15, 8, 1, 1, 'shipped', '2026-11-13 16:17:00'),
    (16, 3, 4, 3, 'paid', '2026-11-14 13:43:00'),
    (17, 7, 2, 1, 'pending', '2026-11-06 10:14:00'),
    (18, 11, 2, 1, 'shipped', '2026-11-19 10:16:00'),
    (19, 5, 1, 1, 'shipped', '2026-11-18 13:39:00'),
    (20, 10, 3, 1, 'cancelled', '2026-11-17 17:41:00'),
    (21, 11, 6, 1, 'shipped', '2026-11-22 20:35:00'),
    (22, 7, 4, 2, 'shipped', '2026-11-04 15:40:00'),
    (23, 7, 1, 1, 'pending', '2026-11-07 15:10:00'),
    (24, 2, 3, 3, 'pending', '2026-11-04 08:36:00'),
    (25, 3, 5, 1, 'paid', '2026-11-20 08:04:00'),
    (26, 4, 5, 2, 'paid', '2026-11-21 12:22:00'),
    (27, 10, 3, 2, 'pending', '2026-11-04 15:29:00'),
    (28, 8, 4, 2, 'pending', '2026-11-05 09:47:00'),
    (29, 6, 6, 2, 'shipped', '2026-11-06 16:01:00'),
    (30, 4, 5, 2, 'paid', '2026-11-18 08:48:00'),
    (31, 9, 3, 3, 'pending', '2026-11-09 16:23:00'),
    (32, 3, 3, 1, 'shipped', '2026-11-18 20:32:00'),
    (33, 6, 6, 1, 'shipped', '2026-11-07 20:15:00'),
    (34, 7, 6, 1, 'paid', '2026-11-17 15:22:00'),
    (35, 12, 1, 1, 'paid', '2026-11-16 12:12:00'),
    (36, 12, 5, 2, 'shipped', '2026-11-12 13:05:00'),
    (37, 4, 1, 1, 'shipped', '2026-11-07 13:13:00'),
    (38, 8, 5, 3, 'pending', '2026-11-16 18:22:00'),
    (39, 11, 1, 3, 'pending', '2026-11-13 20:45:00'),
    (40, 4, 4, 1, 'shipped', '2026-11-21 13:05:00');
INSERT INTO sessions (id, customer_id, expires_at) VALUES
    ('sf237cd02c5e1', 12, '2026-11-13 14:00:00'),
    ('sbe4c66c1494e', 2, '2026-11-24 05:00:00'),
    ('sfe3c2b855c1f', 3, '2026-11-01 04:00:00'),
    ('se7a4973f7986', 8, '2026-11-26 20:00:00'),
    ('s9c90256badf9', 10, '2026-11-16 21:00:00'),
    ('s59b4effddeea', 3, '2026-11-18 17:00:00'),
    ('s057a2188287e', 1, '2026-11-26 23:00:00'),
    ('s1a4fa6511445', 9, '2026-11-24 04:00:00'),
    ('sfc8e6f0e2289', 4, '2026-11-27 06:00:00'),
    ('s4078072a98d2', 4, '2026-11-10 16:00:00'),
    ('sc3803d93fd4c', 10, '2026-11-11 08:00:00'),
    ('s6b448b5ab3ee', 3, '2026-11-02 23:00:00'),
    ('se5cf5a9196f0', 8, '2026-11-22 18:00:00'),
    ('se77fd0a6ec17', 9, '2026-11-14 16:00:00'),
    ('s88252179b37d', 3, '2026-11-17 16:00:00'),
    ('sdf7004c9d78d', 8, '2026-11-25 05:00:00'),
    ('s01019bca3cb7', 3, '2026-11-06 04:00:00'),
    ('s9e7d7936d536', 12, '2026-11-04 17:00:00'),
    ('s53730fcf31ca', 11, '2026-11-17 16:00:00'),
    ('s7b848e317041', 2, '2026-11-29 17:00:00'),
    ('s3f9d0e8bec94', 4, '2026-11-09 01:00:00'),
    ('s1905c5b2e75a', 9, '2026-11-15 17:00:00'),
    ('sc28e072235c2', 2, '2026-11-15 10:00:00'),
    ('sf92e9ccea098', 9, '2026-11-20 16:00:00'),
    ('sb156330c16a3', 5, '2026-11-15 16:00:00'),
    ('sceaf888564e8', 8, '2026-11-17 07:00:00'),
    ('s85f1b2fff17b', 5, '2026-11-30 17:00:00'),
    ('sf179e48b9662', 4, '2026-11-27 14:00:00'),
    ('s6aa8231b3e14', 2, '2026-11-13 14:00:00'),
    ('s129250e40d54', 11, '2026-11-08 13:00:00');
