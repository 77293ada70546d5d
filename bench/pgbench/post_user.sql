-- POST /user: src/db/users.rs `insert`, the same statement with its three text parameters.
-- bench/run sets :first_name and :last_name (-D). pgbench cannot build strings, so the
-- unique email is a random 19-digit number sent as text: the column has no format check
-- (the server validates emails before the INSERT), and it still goes through the unique
-- index on lower(email) like a real address.
\set email random(1000000000000000000, 9000000000000000000)
INSERT INTO users (first_name, last_name, email) VALUES (:first_name, :last_name, :email) RETURNING id, first_name, last_name, email, created_at, updated_at;
