"""Schemathesis hooks: the one rule of the contract that OpenAPI cannot express.

`after_id` may not be combined with a non-zero `offset` (a 400 by API.md); a query
schema cannot state a rule between two parameters, so such queries are not generated
as "valid" ones. The server's 400 for them is covered by the integration tests.
"""
import schemathesis


@schemathesis.hook
def filter_query(ctx, query):
    if not query:
        return True
    return query.get("after_id") is None or query.get("offset") in (None, 0, "0")
