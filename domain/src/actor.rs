//! Who is calling. The server builds an [`Actor`] from a verified JWT; the layer above the domain
//! (the GraphQL guard, the plain-HTTP routes) converts it once into the capability an operation
//! needs ([`MemberActor`], [`ServiceActor`], [`AdminActor`], [`ActionCaller`], [`Viewer`]), and
//! that conversion is the only role check: a domain method taking a capability cannot be reached
//! with the wrong role, so it never looks at a role again. Capabilities scope data (program) and
//! idempotency keys (program + role + subject).

use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, DomainResult};

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

/// The idempotency scope of a caller inside its program. Stored keys are derived from it: it must
/// stay byte-for-byte what it is, whichever type carries the caller.
fn scope_of(role: Role, subject: &str) -> String {
    format!("{}:{}", role.as_str(), subject)
}

impl Actor {
    /// The idempotency scope of this caller inside its program.
    pub fn scope(&self) -> String {
        scope_of(self.role, &self.subject)
    }

    /// Converts into capability `C`, or `FORBIDDEN` naming the roles that may.
    pub fn authorize<C: Capability>(&self) -> DomainResult<C> {
        C::authorize(self)
    }

    pub fn as_member(&self) -> DomainResult<MemberActor> {
        self.authorize()
    }

    pub fn as_service(&self) -> DomainResult<ServiceActor> {
        self.authorize()
    }

    pub fn as_admin(&self) -> DomainResult<AdminActor> {
        self.authorize()
    }

    fn principal(&self) -> Principal {
        Principal {
            program: self.program.clone(),
            subject: self.subject.clone(),
        }
    }
}

/// What a capability tells the domain about its caller: the program and the token subject, and
/// deliberately not the role (the capability's type is the role).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub program: String,
    pub subject: String,
}

/// A capability: built from an [`Actor`] only through [`Capability::authorize`], the one checked
/// conversion. Nothing outside this module can make one by hand:
///
/// ```compile_fail
/// use loyalty_domain::actor::{AdminActor, Principal};
/// let forged = AdminActor(Principal { program: "p".into(), subject: "s".into() });
/// ```
pub trait Capability: Sized {
    /// The roles that convert, in the order a refusal names them.
    const ROLES: &'static [Role];

    fn authorize(actor: &Actor) -> DomainResult<Self>;
}

/// The refusal of a conversion: the same words the GraphQL guard has always answered with.
fn refuse(actor: &Actor, roles: &[Role]) -> DomainError {
    let allowed: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
    DomainError::Forbidden(format!(
        "a {} token cannot do this (needs {})",
        actor.role.as_str(),
        allowed.join(" or ")
    ))
}

/// A caller with an idempotency scope: what an idempotency key is scoped to.
pub trait Caller {
    fn scope(&self) -> String;
}

impl Caller for Actor {
    fn scope(&self) -> String {
        Actor::scope(self)
    }
}

macro_rules! capability {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name(Principal);

        impl $name {
            pub fn scope(&self) -> String {
                scope_of($role, &self.0.subject)
            }
        }

        impl Capability for $name {
            const ROLES: &'static [Role] = &[$role];

            fn authorize(actor: &Actor) -> DomainResult<Self> {
                if actor.role == $role {
                    Ok($name(actor.principal()))
                } else {
                    Err(refuse(actor, Self::ROLES))
                }
            }
        }

        impl Caller for $name {
            fn scope(&self) -> String {
                $name::scope(self)
            }
        }

        // Read-only access to the program and subject; without `DerefMut` an authorized caller
        // cannot be turned into someone else.
        impl Deref for $name {
            type Target = Principal;

            fn deref(&self) -> &Principal {
                &self.0
            }
        }
    };
}

capability!(
    /// A member acting for themselves (the subject is their external id).
    MemberActor,
    Role::Member
);
capability!(
    /// A merchant backend: reports purchases, consumes vouchers, acts for named members.
    ServiceActor,
    Role::Service
);
capability!(
    /// A merchant admin: configures the program and adjusts balances.
    AdminActor,
    Role::Admin
);

/// Who may record an action: a member for themselves, or a service for a named member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionCaller {
    Member(MemberActor),
    Service(ServiceActor),
}

impl Capability for ActionCaller {
    const ROLES: &'static [Role] = &[Role::Member, Role::Service];

    fn authorize(actor: &Actor) -> DomainResult<Self> {
        match actor.role {
            Role::Member => Ok(ActionCaller::Member(MemberActor(actor.principal()))),
            Role::Service => Ok(ActionCaller::Service(ServiceActor(actor.principal()))),
            Role::Admin => Err(refuse(actor, Self::ROLES)),
        }
    }
}

impl Caller for ActionCaller {
    fn scope(&self) -> String {
        match self {
            ActionCaller::Member(member) => member.scope(),
            ActionCaller::Service(service) => service.scope(),
        }
    }
}

impl Deref for ActionCaller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        match self {
            ActionCaller::Member(member) => member,
            ActionCaller::Service(service) => service,
        }
    }
}

/// Who may read the program's wheels and leaderboards: a member (who also sees their own
/// standing) or an admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    Member(MemberActor),
    Admin(AdminActor),
}

impl Capability for Viewer {
    const ROLES: &'static [Role] = &[Role::Member, Role::Admin];

    fn authorize(actor: &Actor) -> DomainResult<Self> {
        match actor.role {
            Role::Member => Ok(Viewer::Member(MemberActor(actor.principal()))),
            Role::Admin => Ok(Viewer::Admin(AdminActor(actor.principal()))),
            Role::Service => Err(refuse(actor, Self::ROLES)),
        }
    }
}

impl Viewer {
    /// The member behind the viewer, if it is one.
    pub fn member(&self) -> Option<&MemberActor> {
        match self {
            Viewer::Member(member) => Some(member),
            Viewer::Admin(_) => None,
        }
    }
}

impl Deref for Viewer {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        match self {
            Viewer::Member(member) => member,
            Viewer::Admin(admin) => admin,
        }
    }
}

/// Any verified caller, whatever the role: for reads open to every token (the program's public
/// settings, a member's fields reached through an authorized query).
impl Capability for Actor {
    const ROLES: &'static [Role] = &[Role::Member, Role::Service, Role::Admin];

    fn authorize(actor: &Actor) -> DomainResult<Self> {
        Ok(actor.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role) -> Actor {
        Actor {
            program: "p".into(),
            role,
            subject: "s".into(),
        }
    }

    fn forbidden<T: std::fmt::Debug>(result: DomainResult<T>) -> String {
        match result {
            Err(DomainError::Forbidden(message)) => message,
            other => panic!("expected FORBIDDEN, got {other:?}"),
        }
    }

    #[test]
    fn a_member_token_becomes_a_member_and_nothing_else() {
        let member = actor(Role::Member);
        let as_member = member.as_member().unwrap();
        assert_eq!(
            (as_member.program.as_str(), as_member.subject.as_str()),
            ("p", "s")
        );
        assert_eq!(
            forbidden(member.as_admin()),
            "a member token cannot do this (needs admin)"
        );
        assert_eq!(
            forbidden(member.as_service()),
            "a member token cannot do this (needs service)"
        );
        assert!(matches!(
            member.authorize::<ActionCaller>(),
            Ok(ActionCaller::Member(_))
        ));
        assert!(matches!(
            member.authorize::<Viewer>(),
            Ok(Viewer::Member(_))
        ));
    }

    #[test]
    fn a_service_token_becomes_a_service_and_nothing_else() {
        let service = actor(Role::Service);
        assert!(service.as_service().is_ok());
        assert_eq!(
            forbidden(service.as_member()),
            "a service token cannot do this (needs member)"
        );
        assert_eq!(
            forbidden(service.as_admin()),
            "a service token cannot do this (needs admin)"
        );
        assert!(matches!(
            service.authorize::<ActionCaller>(),
            Ok(ActionCaller::Service(_))
        ));
        assert_eq!(
            forbidden(service.authorize::<Viewer>()),
            "a service token cannot do this (needs member or admin)"
        );
    }

    #[test]
    fn an_admin_token_becomes_an_admin_and_nothing_else() {
        let admin = actor(Role::Admin);
        assert!(admin.as_admin().is_ok());
        assert_eq!(
            forbidden(admin.as_member()),
            "a admin token cannot do this (needs member)"
        );
        assert_eq!(
            forbidden(admin.as_service()),
            "a admin token cannot do this (needs service)"
        );
        assert_eq!(
            forbidden(admin.authorize::<ActionCaller>()),
            "a admin token cannot do this (needs member or service)"
        );
        assert!(matches!(admin.authorize::<Viewer>(), Ok(Viewer::Admin(_))));
        assert!(admin.authorize::<Viewer>().unwrap().member().is_none());
    }

    #[test]
    fn every_token_is_some_actor() {
        for role in [Role::Member, Role::Service, Role::Admin] {
            assert_eq!(actor(role).authorize::<Actor>().unwrap(), actor(role));
        }
    }

    /// Stored idempotency keys were derived from `Actor::scope`: every capability must produce
    /// the same bytes for the same caller.
    #[test]
    fn capabilities_keep_the_idempotency_scope_of_their_actor() {
        let member = actor(Role::Member);
        let service = actor(Role::Service);
        let admin = actor(Role::Admin);
        assert_eq!(member.scope(), "member:s");
        assert_eq!(member.as_member().unwrap().scope(), member.scope());
        assert_eq!(service.as_service().unwrap().scope(), service.scope());
        assert_eq!(admin.as_admin().unwrap().scope(), admin.scope());
        let caller = |a: &Actor| Caller::scope(&a.authorize::<ActionCaller>().unwrap());
        assert_eq!(caller(&member), member.scope());
        assert_eq!(caller(&service), service.scope());
    }
}
