-- GET /users?limit=10&offset={random}: src/db/users.rs `list` without an email; the
-- server passes after_id 0 when it is absent. Offsets up to 10 000, the server's default
-- MAX_LIST_OFFSET, like bench/lua/list_offset.lua.
\set after_id 0
\set lim 10
\set off random(0, least(:users - 10, 10000))
SELECT id, first_name, last_name, email, created_at, updated_at FROM users WHERE id > :after_id ORDER BY id LIMIT :lim OFFSET :off;
