//! Properties of the input validation layer: what turns untrusted client input (query
//! strings, path ids, request bodies) into typed values. Every expectation is
//! computed from the rules in API.md, never by calling the code under test.
//!
//! One module per kind of input; `rules` holds the expectations, `strategies` the
//! generators.

mod rules;
mod strategies;
mod support;

mod bodies_are_json_objects_or_refused;
mod emails_follow_the_documented_rule;
mod ids_are_1_to_i64_max;
mod list_queries_follow_the_documented_rule;
mod names_are_trimmed_and_at_most_100_chars;
mod query_strings_decode_percent_escapes;
mod users_and_patches_follow_the_body_rules;
