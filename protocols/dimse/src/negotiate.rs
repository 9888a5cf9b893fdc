//! Acceptor-side negotiation: evaluate an A-ASSOCIATE-RQ against a
//! [`Policy`] and produce the A-ASSOCIATE-AC or -RJ to answer with.

use std::collections::BTreeSet;

use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult, AssociationRJServiceProviderASCEReason,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason, AssociationRJSource, AssociationRQ,
    PresentationContextNegotiated, PresentationContextResult, PresentationContextResultReason, RequestorRoles,
    UserIdentityType, UserVariableItem,
};

/// The DICOM application context name (PS3.7 Annex A.2.1).
pub const APPLICATION_CONTEXT_NAME: &str = "1.2.840.10008.3.1.1.1";

/// Which abstract syntaxes (SOP classes) we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbstractSyntaxes {
    /// Any abstract syntax (a relay that does not care).
    Any,
    /// Only these UIDs.
    Only(BTreeSet<String>),
}

/// What the acceptor will agree to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Our AE title(s); the called AE must be one of them. Empty = answer to any.
    pub ae_titles: Vec<String>,
    /// Calling AE titles allowed to associate. Empty = any.
    pub allowed_calling_ae_titles: Vec<String>,
    /// Abstract syntaxes we accept.
    pub abstract_syntaxes: AbstractSyntaxes,
    /// Abstract syntaxes refused as a matter of policy (answered with
    /// user-rejection), even when `abstract_syntaxes` is `Any`.
    pub denied_abstract_syntaxes: BTreeSet<String>,
    /// Transfer syntaxes we accept, most preferred first. For each context
    /// the first of these that the requestor also proposed wins.
    pub transfer_syntaxes: Vec<String>,
    /// The Maximum Length we announce (largest P-DATA-TF body we accept).
    pub max_pdu_length: u32,
    /// More proposed presentation contexts than this is a local limit
    /// (rejected-transient, local-limit-exceeded).
    pub max_presentation_contexts: usize,
    /// Whether we agree to the requestor acting as SCP for a SOP class when
    /// it proposes so (SCP/SCU Role Selection, PS3.7 D.3.3.4), e.g. C-GET.
    pub allow_requestor_scp_role: bool,
    /// Reject (permanent, service-user, no-reason-given) when no presentation
    /// context could be accepted, instead of an AC with none accepted.
    pub reject_if_no_context_accepted: bool,
    /// Our Implementation Class UID.
    pub implementation_class_uid: String,
    /// Our Implementation Version Name, if any (at most 16 characters).
    pub implementation_version_name: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ae_titles: Vec::new(),
            allowed_calling_ae_titles: Vec::new(),
            abstract_syntaxes: AbstractSyntaxes::Any,
            denied_abstract_syntaxes: BTreeSet::new(),
            transfer_syntaxes: vec![
                "1.2.840.10008.1.2.1".to_string(), // explicit VR little endian
                "1.2.840.10008.1.2".to_string(),   // implicit VR little endian
            ],
            max_pdu_length: 16_384,
            max_presentation_contexts: 128,
            allow_requestor_scp_role: false,
            reject_if_no_context_accepted: false,
            // 2.25 UUID-derived root for Harmony.
            implementation_class_uid: "2.25.180116224512357846731806541153958391371".to_string(),
            implementation_version_name: Some("HARMONY".to_string()),
        }
    }
}

/// A user identity from the RQ's User Identity sub-item (PS3.7 D.3.3.7).
/// Secrets are passed through as sent; judging them is the caller's job.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    /// Type 1: a username.
    Username(String),
    /// Type 2: a username and passcode.
    UsernamePassword {
        /// The username.
        username: String,
        /// The passcode.
        password: String,
    },
    /// Type 3: a Kerberos service ticket.
    Kerberos(Vec<u8>),
    /// Type 4: a SAML assertion.
    Saml(Vec<u8>),
    /// Type 5: a JSON Web Token.
    Jwt(String),
}

impl std::fmt::Debug for Identity {
    // Never print secrets into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Username(u) => f.debug_tuple("Username").field(u).finish(),
            Identity::UsernamePassword { username, .. } => {
                f.debug_struct("UsernamePassword").field("username", username).finish_non_exhaustive()
            }
            Identity::Kerberos(_) => f.write_str("Kerberos(..)"),
            Identity::Saml(_) => f.write_str("Saml(..)"),
            Identity::Jwt(_) => f.write_str("Jwt(..)"),
        }
    }
}

/// The user identity the requestor sent, if any, and whether it asked for a
/// positive response.
pub fn user_identity(rq: &AssociationRQ) -> Option<(Identity, bool)> {
    rq.user_variables.iter().find_map(|item| match item {
        UserVariableItem::UserIdentityItem(id) => {
            let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
            let identity = match id.identity_type() {
                UserIdentityType::Username => Identity::Username(text(id.primary_field())),
                UserIdentityType::UsernamePassword => Identity::UsernamePassword {
                    username: text(id.primary_field()),
                    password: text(id.secondary_field()),
                },
                UserIdentityType::KerberosServiceTicket => Identity::Kerberos(id.primary_field()),
                UserIdentityType::SamlAssertion => Identity::Saml(id.primary_field()),
                UserIdentityType::Jwt => Identity::Jwt(text(id.primary_field())),
                _ => return None,
            };
            Some((identity, id.positive_response_requested()))
        }
        _ => None,
    })
}

/// The requestor's Maximum Length (0 = unlimited), if it sent one.
pub fn peer_max_pdu(rq: &AssociationRQ) -> Option<u32> {
    rq.user_variables.iter().find_map(|item| match item {
        UserVariableItem::MaxLength(n) => Some(*n),
        _ => None,
    })
}

/// What an accepted association agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Every proposed context with its result; accepted ones carry the
    /// chosen transfer syntax.
    pub contexts: Vec<PresentationContextNegotiated>,
    /// The requestor's Maximum Length (0 = unlimited); fragment to this.
    pub peer_max_pdu: u32,
    /// The requestor's user identity, if it sent one.
    pub identity: Option<Identity>,
    /// The requestor's Implementation Class UID, if it sent one.
    pub peer_implementation_class_uid: Option<String>,
}

/// The answer to an A-ASSOCIATE-RQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accept with this AC; `Negotiated` says what was agreed.
    Accept(Box<AssociationAC>, Box<Negotiated>),
    /// Reject with this RJ.
    Reject(AssociationRJ),
}

/// The standard reasons an acceptor rejects (PS3.8 §9.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Permanent, service-user, no-reason-given.
    NoReason,
    /// Permanent, service-user, application-context-name-not-supported.
    ApplicationContextNotSupported,
    /// Permanent, service-user, calling-AE-title-not-recognized.
    CallingAeNotRecognized,
    /// Permanent, service-user, called-AE-title-not-recognized.
    CalledAeNotRecognized,
    /// Permanent, service-provider (ACSE), protocol-version-not-supported.
    ProtocolVersionNotSupported,
    /// Transient, service-provider (presentation), temporary-congestion.
    TemporaryCongestion,
    /// Transient, service-provider (presentation), local-limit-exceeded.
    LocalLimitExceeded,
}

/// The A-ASSOCIATE-RJ for a reason, with its standard result/source codes.
pub fn reject(reason: RejectReason) -> AssociationRJ {
    use AssociationRJResult::{Permanent, Transient};
    use AssociationRJSource::{ServiceProviderASCE, ServiceProviderPresentation, ServiceUser};
    let (result, source) = match reason {
        RejectReason::NoReason => (Permanent, ServiceUser(AssociationRJServiceUserReason::NoReasonGiven)),
        RejectReason::ApplicationContextNotSupported => {
            (Permanent, ServiceUser(AssociationRJServiceUserReason::ApplicationContextNameNotSupported))
        }
        RejectReason::CallingAeNotRecognized => {
            (Permanent, ServiceUser(AssociationRJServiceUserReason::CallingAETitleNotRecognized))
        }
        RejectReason::CalledAeNotRecognized => {
            (Permanent, ServiceUser(AssociationRJServiceUserReason::CalledAETitleNotRecognized))
        }
        RejectReason::ProtocolVersionNotSupported => {
            (Permanent, ServiceProviderASCE(AssociationRJServiceProviderASCEReason::ProtocolVersionNotSupported))
        }
        RejectReason::TemporaryCongestion => (
            Transient,
            ServiceProviderPresentation(AssociationRJServiceProviderPresentationReason::TemporaryCongestion),
        ),
        RejectReason::LocalLimitExceeded => {
            (Transient, ServiceProviderPresentation(AssociationRJServiceProviderPresentationReason::LocalLimitExceeded))
        }
    };
    AssociationRJ { result, source }
}

/// UIDs on the wire may carry a trailing NUL or space pad.
fn uid(s: &str) -> &str {
    s.trim_end_matches(['\0', ' '])
}

fn ae_matches(list: &[String], ae: &str) -> bool {
    list.is_empty() || list.iter().any(|a| a.trim() == ae.trim())
}

/// Evaluate an A-ASSOCIATE-RQ against `policy`. Checks run in the order a
/// requestor can act on: protocol version, application context, called AE,
/// calling AE, local limits, then each presentation context.
pub fn evaluate(rq: &AssociationRQ, policy: &Policy) -> Outcome {
    // PS3.8 §9.3.2: only bit 0 is tested.
    if rq.protocol_version & 1 == 0 {
        return Outcome::Reject(reject(RejectReason::ProtocolVersionNotSupported));
    }
    if uid(&rq.application_context_name) != APPLICATION_CONTEXT_NAME {
        return Outcome::Reject(reject(RejectReason::ApplicationContextNotSupported));
    }
    if !ae_matches(&policy.ae_titles, &rq.called_ae_title) {
        return Outcome::Reject(reject(RejectReason::CalledAeNotRecognized));
    }
    if !ae_matches(&policy.allowed_calling_ae_titles, &rq.calling_ae_title) {
        return Outcome::Reject(reject(RejectReason::CallingAeNotRecognized));
    }
    if rq.presentation_contexts.len() > policy.max_presentation_contexts {
        return Outcome::Reject(reject(RejectReason::LocalLimitExceeded));
    }

    let mut results = Vec::with_capacity(rq.presentation_contexts.len());
    let mut negotiated = Vec::with_capacity(rq.presentation_contexts.len());
    for pc in &rq.presentation_contexts {
        let abstract_syntax = uid(&pc.abstract_syntax);
        let (reason, ts) = if policy.denied_abstract_syntaxes.contains(abstract_syntax) {
            (PresentationContextResultReason::UserRejection, None)
        } else if matches!(&policy.abstract_syntaxes, AbstractSyntaxes::Only(set) if !set.contains(abstract_syntax)) {
            (PresentationContextResultReason::AbstractSyntaxNotSupported, None)
        } else {
            let chosen = policy
                .transfer_syntaxes
                .iter()
                .find(|ours| pc.transfer_syntaxes.iter().any(|t| uid(t) == ours.as_str()));
            match chosen {
                Some(ts) => (PresentationContextResultReason::Acceptance, Some(ts.clone())),
                None => (PresentationContextResultReason::TransferSyntaxesNotSupported, None),
            }
        };
        // The transfer syntax sub-item is not significant unless accepted,
        // but must be present; echo the first proposed one.
        let transfer_syntax =
            ts.unwrap_or_else(|| pc.transfer_syntaxes.first().map(|t| uid(t).to_string()).unwrap_or_default());
        results.push(PresentationContextResult {
            id: pc.id,
            reason: reason.clone(),
            transfer_syntax: transfer_syntax.clone(),
        });
        negotiated.push(PresentationContextNegotiated {
            id: pc.id,
            reason,
            transfer_syntax,
            abstract_syntax: abstract_syntax.to_string(),
        });
    }
    let any_accepted = results.iter().any(|r| r.reason == PresentationContextResultReason::Acceptance);
    if policy.reject_if_no_context_accepted && !any_accepted {
        return Outcome::Reject(reject(RejectReason::NoReason));
    }

    let mut user_variables = vec![
        UserVariableItem::MaxLength(policy.max_pdu_length),
        UserVariableItem::ImplementationClassUID(policy.implementation_class_uid.clone()),
    ];
    if let Some(name) = &policy.implementation_version_name {
        user_variables.push(UserVariableItem::ImplementationVersionName(name.clone()));
    }
    user_variables.extend(role_selection_answers(rq, policy, &negotiated));

    let ac = AssociationAC {
        protocol_version: 1,
        calling_ae_title: rq.calling_ae_title.clone(),
        called_ae_title: rq.called_ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT_NAME.to_string(),
        presentation_contexts: results,
        user_variables,
    };
    let info = Negotiated {
        contexts: negotiated,
        peer_max_pdu: peer_max_pdu(rq).unwrap_or(0),
        identity: user_identity(rq).map(|(id, _)| id),
        peer_implementation_class_uid: rq.user_variables.iter().find_map(|i| match i {
            UserVariableItem::ImplementationClassUID(u) => Some(uid(u).to_string()),
            _ => None,
        }),
    };
    Outcome::Accept(Box::new(ac), Box::new(info))
}

/// PS3.7 D.3.3.4: answer each role proposal for an accepted abstract syntax.
/// A role the requestor did not propose is never granted; the SCU role is
/// always granted when proposed; the SCP role only if the policy allows.
fn role_selection_answers(
    rq: &AssociationRQ,
    policy: &Policy,
    negotiated: &[PresentationContextNegotiated],
) -> Vec<UserVariableItem> {
    rq.user_variables
        .iter()
        .filter_map(|item| match item {
            UserVariableItem::ScuScpRoleSelectionSubItem(sop_class, roles) => {
                let sop_class = uid(sop_class);
                let accepted = negotiated
                    .iter()
                    .any(|c| c.abstract_syntax == sop_class && c.reason == PresentationContextResultReason::Acceptance);
                accepted.then(|| {
                    UserVariableItem::ScuScpRoleSelectionSubItem(
                        sop_class.to_string(),
                        RequestorRoles { scu: roles.scu, scp: roles.scp && policy.allow_requestor_scp_role },
                    )
                })
            }
            _ => None,
        })
        .collect()
}
