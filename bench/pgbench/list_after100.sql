-- GET /users?limit=100&after_id={random}: src/db/users.rs `list` without an email,
-- offset 0, a full page of 100.
\set after_id random(1, :users - 100)
\set lim 100
\set off 0
SELECT id, first_name, last_name, email, created_at, updated_at FROM users WHERE id > :after_id ORDER BY id LIMIT :lim OFFSET :off;
