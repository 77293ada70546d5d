-- GET /users?limit=10&after_id={random}: src/db/users.rs `list` without an email,
-- offset 0.
\set after_id random(1, :users - 10)
\set lim 10
\set off 0
SELECT id, first_name, last_name, email, created_at, updated_at FROM users WHERE id > :after_id ORDER BY id LIMIT :lim OFFSET :off;
