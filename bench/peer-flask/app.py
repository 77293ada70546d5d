"""The Flask peer: the same routes the way the service was first written, in Flask with
psycopg2 under gunicorn's sync workers (2 × cores + 1 processes, gunicorn's own advice).

Each worker process serves one request at a time, so it holds one connection, opened at
its first request and opened again after a failure. Statements run in autocommit mode:
one statement per request, no BEGIN/COMMIT around a read, which is the fastest a
psycopg2 application can talk to PostgreSQL. psycopg2 puts the parameters into the text
of each statement itself, so PostgreSQL parses and plans every one (bench/run's SQL check
compares these statements with the parameters masked). bench/run starts it as:

    gunicorn --workers N --bind 127.0.0.1:PORT app:app     (DATABASE_URL in the environment)
"""

import os

import psycopg2
import psycopg2.errors
from flask import Flask, jsonify, request

COLUMNS = "id, first_name, last_name, email, created_at, updated_at"

app = Flask(__name__)
_conn = None


def db():
    """This worker process's connection, opened on first use and after a failure."""
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=5)
        _conn.autocommit = True
    return _conn


def query(sql, params):
    global _conn
    try:
        with db().cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    except psycopg2.OperationalError:
        if _conn is not None:
            _conn.close()
        _conn = None
        raise


def user(row):
    return {"id": row[0], "first_name": row[1], "last_name": row[2], "email": row[3],
            "created_at": row[4].isoformat(), "updated_at": row[5].isoformat()}


def error(status, message):
    return jsonify(error=message), status


@app.errorhandler(psycopg2.OperationalError)
def unavailable(_e):
    return error(503, "database unavailable")


@app.get("/health")
def health():
    return "ok"


@app.get("/user/<int:user_id>")
def get_user(user_id):
    rows = query(f"SELECT {COLUMNS} FROM users WHERE id = %s", (user_id,))
    if not rows:
        return error(404, "user not found")
    return jsonify(user(rows[0]))


def valid_name(s):
    return isinstance(s, str) and s.strip() != "" and len(s) <= 100


@app.post("/user")
def create_user():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(400, "a JSON object is expected")
    first, last, email = body.get("first_name"), body.get("last_name"), body.get("email")
    if not valid_name(first) or not valid_name(last):
        return error(400, "names must be 1 to 100 characters")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        return error(400, "invalid email")
    try:
        rows = query(f"INSERT INTO users (first_name, last_name, email) VALUES (%s, %s, %s) RETURNING {COLUMNS}",
                     (first, last, email))
    except psycopg2.errors.UniqueViolation:
        return error(409, "email already in use")
    created = user(rows[0])
    return jsonify(created), 201, {"Location": f"/user/{created['id']}"}


@app.get("/users")
def list_users():
    try:
        limit = int(request.args.get("limit", 10))
        offset = int(request.args.get("offset", 0))
        after_id = int(request.args.get("after_id", 0))
    except ValueError:
        return error(400, "limit, offset and after_id must be integers")
    if not 1 <= limit <= 100 or offset < 0 or after_id < 0:
        return error(400, "limit must be 1 to 100, offset and after_id 0 or more")
    rows = query(f"SELECT {COLUMNS} FROM users WHERE id > %s ORDER BY id LIMIT %s OFFSET %s",
                 (after_id, limit, offset))
    users = [user(r) for r in rows]
    next_after_id = users[-1]["id"] if len(users) == limit else None
    return jsonify(users=users, limit=limit, offset=offset, next_after_id=next_after_id)
