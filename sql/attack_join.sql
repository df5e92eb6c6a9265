--
-- Attack: reach gated rows through joins (every join method, outer
-- joins), subqueries, CTEs, LATERAL and set operations.
--
\i sql/include/attack_setup.sql

SET ROLE atk_owner;
SELECT consent.protect('customers', 'id', 'marketing');
RESET ROLE;
-- orders are not protected: the attacker may read all of them, and tries
-- to reach the customers through them.
CREATE TABLE orders (id integer PRIMARY KEY, customer_id bigint, amount numeric);
INSERT INTO orders SELECT g, g, g * 10 FROM generate_series(1, 8) g;
GRANT SELECT ON customers, orders TO atk_attacker;
ANALYZE customers, orders;

SET ROLE atk_attacker;
-- inner join, every join method
SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id;
SET enable_hashjoin = off; SET enable_mergejoin = off;
SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id;
SET enable_nestloop = off; SET enable_mergejoin = on;
SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id;
SET enable_mergejoin = off; SET enable_hashjoin = on;
SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id;
RESET enable_hashjoin; RESET enable_mergejoin; RESET enable_nestloop;
-- outer joins: the order shows, the gated customer does not
SELECT o.id, c.name, c.email FROM orders o LEFT JOIN customers c ON c.id = o.customer_id ORDER BY o.id;
SELECT o.id, c.name FROM customers c RIGHT JOIN orders o ON c.id = o.customer_id ORDER BY o.id;
SELECT coalesce(o.id, -1) AS order_id, c.name FROM customers c FULL JOIN orders o ON c.id = o.customer_id ORDER BY 1;
-- self join and cross join
SELECT a.id, b.id FROM customers a JOIN customers b ON b.id = a.id + 1 ORDER BY 1;
SELECT count(*) AS cross_pairs FROM customers a CROSS JOIN customers b;
-- subqueries: IN, EXISTS, scalar, ANY, NOT IN
SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers) ORDER BY id;
SELECT id FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id) ORDER BY id;
SELECT o.id, (SELECT c.name FROM customers c WHERE c.id = o.customer_id) AS name FROM orders o ORDER BY o.id;
SELECT id FROM orders WHERE customer_id = ANY (ARRAY(SELECT id FROM customers)) ORDER BY id;
SELECT id FROM orders WHERE customer_id NOT IN (SELECT id FROM customers) ORDER BY id;
SELECT * FROM (SELECT * FROM customers WHERE id > 3) s;
-- CTEs, materialized or not, and recursive
WITH c AS MATERIALIZED (SELECT * FROM customers) SELECT id, name FROM c ORDER BY id;
WITH c AS NOT MATERIALIZED (SELECT * FROM customers) SELECT id, name FROM c WHERE id >= 4;
WITH RECURSIVE walk(id, name) AS (
	SELECT id, name FROM customers WHERE id = 1
	UNION ALL
	SELECT c.id, c.name FROM walk w JOIN customers c ON c.id = w.id + 1
) SELECT * FROM walk ORDER BY id;
-- lateral
SELECT g, x.name FROM generate_series(1, 8) g, LATERAL (SELECT name FROM customers WHERE id = g) x ORDER BY g;
SELECT g, x.name FROM generate_series(1, 8) g LEFT JOIN LATERAL (SELECT name FROM customers WHERE id = g) x ON true ORDER BY g;
-- set operations
SELECT id FROM customers UNION SELECT customer_id FROM orders WHERE customer_id > 100 ORDER BY 1;
SELECT customer_id FROM orders EXCEPT SELECT id FROM customers ORDER BY 1;
SELECT customer_id FROM orders INTERSECT SELECT id FROM customers ORDER BY 1;
-- views the attacker creates in its own schema: with security_invoker or
-- without, they read as the attacker (a view the table owner creates reads
-- as the owner, see attack_owner)
RESET ROLE;
CREATE SCHEMA atk AUTHORIZATION atk_attacker;
SET ROLE atk_attacker;
CREATE VIEW atk.all_customers WITH (security_invoker = true) AS SELECT * FROM public.customers;
SELECT id, name FROM atk.all_customers ORDER BY id;
CREATE VIEW atk.all_customers2 AS SELECT * FROM public.customers;
SELECT id, name FROM atk.all_customers2 ORDER BY id;
-- the same under the bulk map
SET consent.bulk_threshold = 0;
SELECT o.id, c.name FROM orders o LEFT JOIN customers c ON c.id = o.customer_id ORDER BY o.id;
RESET consent.bulk_threshold;
RESET ROLE;
DROP TABLE orders;

-- Clean up.
RESET ROLE;
DROP SCHEMA IF EXISTS atk CASCADE;
DROP TABLE customers CASCADE;
DROP EXTENSION consent CASCADE;
-- protect() granted USAGE on schema consent, which outlives the extension
DROP OWNED BY atk_owner, atk_attacker;
DROP ROLE atk_owner, atk_attacker;
CREATE EXTENSION consent;
