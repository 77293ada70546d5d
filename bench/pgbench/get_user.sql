-- GET /user/{id}: src/db/users.rs `get`, the same statement with its one int8 parameter.
-- bench/run sets :users (-D users=N).
\set id random(1, :users)
SELECT id, first_name, last_name, email, created_at, updated_at FROM users WHERE id = :id;
