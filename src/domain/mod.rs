//! Domain types: input parsed into values that are valid by construction, and the user
//! as the API shows it.

mod email;
mod list_query;
mod name;
mod user;
mod user_id;
mod version;

pub use email::Email;
pub use list_query::{DEFAULT_MAX_OFFSET, ListQuery};
pub use name::PersonName;
pub use user::{NewUser, Timestamp, User, UserPatch, UserView};
pub use user_id::UserId;
pub use version::Version;
