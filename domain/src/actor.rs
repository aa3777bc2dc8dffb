//! Who is calling. The server builds an [`Actor`] from a verified JWT; everything below uses it to
//! scope data (program) and idempotency keys (program + role + subject).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Service,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Service => "service",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "member" => Some(Role::Member),
            "service" => Some(Role::Service),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A verified caller: program external id, role and token subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub program: String,
    pub role: Role,
    pub subject: String,
}

impl Actor {
    /// The idempotency scope of this caller inside its program.
    pub fn scope(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.subject)
    }
}
