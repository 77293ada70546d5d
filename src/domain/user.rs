//! The user: `NewUser` and `UserPatch` parsed from request bodies, `User` as stored and
//! shown.

use std::time::SystemTime;

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::{Email, PersonName};
use crate::clock;
use crate::error::ApiError;
use crate::http::body::JsonObject;

/// The body of POST and PUT: both names required, `email` absent or null means none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub email: Option<Email>,
}

/// The body of PATCH: `None` leaves a field alone; `email: Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub first_name: Option<PersonName>,
    pub last_name: Option<PersonName>,
    pub email: Option<Option<Email>>,
}

impl UserPatch {
    pub fn is_empty(&self) -> bool {
        self.first_name.is_none() && self.last_name.is_none() && self.email.is_none()
    }
}

/// A field of a body, telling absent from `null`.
enum Field<'a> {
    Absent,
    Null,
    Str(&'a str),
}

const FIELDS: [&str; 3] = ["first_name", "last_name", "email"];

fn field<'a>(obj: &'a JsonObject, name: &'static str) -> Result<Field<'a>, ApiError> {
    match obj.get(name) {
        None => Ok(Field::Absent),
        Some(Value::Null) => Ok(Field::Null),
        Some(Value::String(s)) => Ok(Field::Str(s)),
        Some(_) => Err(ApiError::validation(
            name,
            format!("{name} must be a string"),
        )),
    }
}

fn reject_unknown(obj: &JsonObject) -> Result<(), ApiError> {
    match obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => {
            let shown: String = k.chars().take(64).collect();
            Err(ApiError::BadRequest(format!(
                "unknown field {shown:?}; expected first_name, last_name or email"
            )))
        }
    }
}

fn required_name(obj: &JsonObject, name: &'static str) -> Result<PersonName, ApiError> {
    match field(obj, name)? {
        Field::Str(s) => PersonName::parse(name, s),
        Field::Absent | Field::Null => {
            Err(ApiError::validation(name, format!("{name} is required")))
        }
    }
}

impl TryFrom<JsonObject> for NewUser {
    type Error = ApiError;

    fn try_from(obj: JsonObject) -> Result<NewUser, ApiError> {
        reject_unknown(&obj)?;
        Ok(NewUser {
            first_name: required_name(&obj, "first_name")?,
            last_name: required_name(&obj, "last_name")?,
            email: match field(&obj, "email")? {
                Field::Str(s) => Some(Email::parse(s)?),
                Field::Absent | Field::Null => None,
            },
        })
    }
}

impl TryFrom<JsonObject> for UserPatch {
    type Error = ApiError;

    fn try_from(obj: JsonObject) -> Result<UserPatch, ApiError> {
        reject_unknown(&obj)?;
        let name = |n: &'static str| match field(&obj, n)? {
            Field::Absent => Ok(None),
            Field::Null => Err(ApiError::validation(n, format!("{n} cannot be null"))),
            Field::Str(s) => PersonName::parse(n, s).map(Some),
        };
        Ok(UserPatch {
            first_name: name("first_name")?,
            last_name: name("last_name")?,
            email: match field(&obj, "email")? {
                Field::Absent => None,
                Field::Null => Some(None),
                Field::Str(s) => Some(Some(Email::parse(s)?)),
            },
        })
    }
}

/// A point in time, shown as RFC 3339 UTC with microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = clock::rfc3339_micros_bytes(self.0);
        // Digits and separators only, so this never fails.
        let text = std::str::from_utf8(&bytes).map_err(serde::ser::Error::custom)?;
        s.serialize_str(text)
    }
}

/// A user as stored; shown through [`UserView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl User {
    pub fn view(&self) -> UserView<'_> {
        UserView {
            id: self.id,
            first_name: &self.first_name,
            last_name: &self.last_name,
            email: self.email.as_deref(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

impl Serialize for User {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(s)
    }
}

/// A user as the API shows it: exactly these six keys, `email` null when unset. Borrowed,
/// so that a page of users is shown straight from the rows PostgreSQL sent, without a
/// `String` per name (three allocations a row, which musl's allocator makes dear).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UserView<'a> {
    pub id: i64,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: Option<&'a str>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl UserView<'_> {
    pub fn to_user(self) -> User {
        User {
            id: self.id,
            first_name: self.first_name.to_owned(),
            last_name: self.last_name.to_owned(),
            email: self.email.map(str::to_owned),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: serde_json::Value) -> JsonObject {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn new_user_parses_when_valid_and_email_is_optional() {
        let u = NewUser::try_from(obj(serde_json::json!(
            {"first_name": " Ada ", "last_name": "Lovelace", "email": "ada@example.com"})))
        .unwrap();
        assert_eq!(u.first_name.as_ref(), "Ada");
        assert_eq!(u.email.unwrap().as_ref(), "ada@example.com");
        for email in [serde_json::json!(null), serde_json::json!({})] {
            let mut o = obj(serde_json::json!({"first_name": "A", "last_name": "B"}));
            if email.is_null() {
                o.insert("email".into(), email);
            }
            assert_eq!(NewUser::try_from(o).unwrap().email, None);
        }
    }

    #[test]
    fn new_user_is_400_naming_the_field_when_invalid() {
        let cases = [
            (serde_json::json!({"last_name": "B"}), Some("first_name")),
            (
                serde_json::json!({"first_name": null, "last_name": "B"}),
                Some("first_name"),
            ),
            (
                serde_json::json!({"first_name": 1, "last_name": "B"}),
                Some("first_name"),
            ),
            (
                serde_json::json!({"first_name": "A", "last_name": ["B"]}),
                Some("last_name"),
            ),
            (
                serde_json::json!({"first_name": "A", "last_name": "B", "email": 5}),
                Some("email"),
            ),
            (
                serde_json::json!({"first_name": "A", "last_name": "B", "email": "x"}),
                Some("email"),
            ),
            (
                serde_json::json!({"first_name": "A", "last_name": "B", "age": 3}),
                None,
            ),
        ];
        for (body, want) in cases {
            let e = NewUser::try_from(obj(body.clone())).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            match (&e, want) {
                (ApiError::Validation { field, .. }, Some(w)) => assert_eq!(*field, w, "{body}"),
                (ApiError::BadRequest(_), None) => {}
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn patch_tells_absent_from_null_from_value() {
        let p = UserPatch::try_from(obj(serde_json::json!({}))).unwrap();
        assert!(p.is_empty());
        let p = UserPatch::try_from(obj(serde_json::json!({"email": null}))).unwrap();
        assert_eq!(p.email, Some(None));
        let p = UserPatch::try_from(obj(
            serde_json::json!({"email": "a@b.co", "last_name": "X"}),
        ))
        .unwrap();
        assert_eq!(p.email.unwrap().unwrap().as_ref(), "a@b.co");
        assert_eq!(p.last_name.unwrap().as_ref(), "X");
        assert!(p.first_name.is_none());
        let e = UserPatch::try_from(obj(serde_json::json!({"first_name": null}))).unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn user_serialises_with_exactly_six_keys_and_null_email() {
        let t = Timestamp(SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_500_000));
        let u = User {
            id: 1,
            first_name: "A".into(),
            last_name: "B".into(),
            email: None,
            created_at: t,
            updated_at: t,
        };
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            serde_json::json!({"id": 1, "first_name": "A", "last_name": "B", "email": null,
                "created_at": "1970-01-01T00:00:01.500000Z", "updated_at": "1970-01-01T00:00:01.500000Z"})
        );
    }
}
