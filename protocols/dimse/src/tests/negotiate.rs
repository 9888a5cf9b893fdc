use std::collections::BTreeSet;

use dicom_ul::pdu::{
    AssociationRJResult, AssociationRJServiceProviderASCEReason, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource, Pdu, PresentationContextProposed,
    PresentationContextResultReason as R, RequestorRoles, UserIdentity, UserIdentityType, UserVariableItem,
};

use super::{sample_rq, CT_IMAGE, EXPLICIT_LE, IMPLICIT_LE};
use crate::negotiate::{evaluate, user_identity, AbstractSyntaxes, Identity, Outcome, Policy};
use crate::{encode, FrameReader};

fn policy() -> Policy {
    Policy { ae_titles: vec!["HARMONY".into()], ..Policy::default() }
}

fn rejected(outcome: Outcome) -> (AssociationRJResult, AssociationRJSource) {
    match outcome {
        Outcome::Reject(rj) => (rj.result, rj.source),
        Outcome::Accept(..) => panic!("expected a rejection"),
    }
}

fn reasons(outcome: &Outcome) -> Vec<(u8, R, String)> {
    match outcome {
        Outcome::Accept(ac, _) => {
            ac.presentation_contexts.iter().map(|c| (c.id, c.reason.clone(), c.transfer_syntax.clone())).collect()
        }
        Outcome::Reject(rj) => panic!("{rj:?}"),
    }
}

#[test]
fn rejection_table() {
    use AssociationRJResult::*;
    use AssociationRJSource::*;
    type Case =
        (&'static str, fn(&mut dicom_ul::pdu::AssociationRQ, &mut Policy), (AssociationRJResult, AssociationRJSource));
    let cases: Vec<Case> = vec![
        (
            "called AE unknown",
            |rq, _| rq.called_ae_title = "OTHER".into(),
            (Permanent, ServiceUser(AssociationRJServiceUserReason::CalledAETitleNotRecognized)),
        ),
        (
            "calling AE not allowed",
            |_, p| p.allowed_calling_ae_titles = vec!["MODALITY1".into()],
            (Permanent, ServiceUser(AssociationRJServiceUserReason::CallingAETitleNotRecognized)),
        ),
        (
            "too many contexts",
            |_, p| p.max_presentation_contexts = 1,
            (
                Transient,
                ServiceProviderPresentation(AssociationRJServiceProviderPresentationReason::LocalLimitExceeded),
            ),
        ),
        (
            "protocol version",
            |rq, _| rq.protocol_version = 2,
            (Permanent, ServiceProviderASCE(AssociationRJServiceProviderASCEReason::ProtocolVersionNotSupported)),
        ),
        (
            "application context",
            |rq, _| rq.application_context_name = "1.2.3".into(),
            (Permanent, ServiceUser(AssociationRJServiceUserReason::ApplicationContextNameNotSupported)),
        ),
        (
            "nothing acceptable",
            |_, p| {
                p.abstract_syntaxes = AbstractSyntaxes::Only(BTreeSet::new());
                p.reject_if_no_context_accepted = true;
            },
            (Permanent, ServiceUser(AssociationRJServiceUserReason::NoReasonGiven)),
        ),
    ];
    for (name, tweak, want) in cases {
        let (mut rq, mut p) = (sample_rq(), policy());
        tweak(&mut rq, &mut p);
        assert_eq!(rejected(evaluate(&rq, &p)), want, "{name}");
    }
}

#[test]
fn rejection_encodes_standard_codes() {
    let mut rq = sample_rq();
    rq.called_ae_title = "OTHER".into();
    let Outcome::Reject(rj) = evaluate(&rq, &policy()) else { panic!() };
    let bytes = encode(&Pdu::AssociationRJ(rj)).unwrap();
    // result 1 (permanent), source 1 (service-user), reason 7 (called AE).
    assert_eq!(bytes, [0x03, 0, 0, 0, 0, 4, 0, 1, 1, 7]);
}

#[test]
fn accepts_with_preferred_transfer_syntax_and_our_user_items() {
    let outcome = evaluate(&sample_rq(), &policy());
    assert_eq!(
        reasons(&outcome),
        vec![(1, R::Acceptance, IMPLICIT_LE.to_string()), (3, R::Acceptance, EXPLICIT_LE.to_string())]
    );
    let Outcome::Accept(ac, info) = outcome else { panic!() };
    assert!(ac.user_variables.contains(&UserVariableItem::MaxLength(16_384)));
    assert_eq!(info.peer_max_pdu, 16384);
    assert_eq!(info.peer_implementation_class_uid.as_deref(), Some("1.2.3.4"));
    // The AC survives an encode/decode round trip.
    let bytes = encode(&Pdu::AssociationAC(*ac.clone())).unwrap();
    let (pdu, _) = FrameReader::new(65536).next(&bytes).unwrap().unwrap();
    assert_eq!(pdu, Pdu::AssociationAC(*ac));
}

#[test]
fn per_context_results() {
    let mut rq = sample_rq();
    rq.presentation_contexts.push(PresentationContextProposed {
        id: 5,
        abstract_syntax: "1.2.840.10008.5.1.4.1.1.4".into(), // MR
        transfer_syntaxes: vec!["1.2.840.10008.1.2.4.50".into()],
    });
    rq.presentation_contexts.push(PresentationContextProposed {
        id: 7,
        abstract_syntax: CT_IMAGE.into(),
        transfer_syntaxes: vec!["1.2.840.10008.1.2.4.50".into()], // JPEG baseline only
    });
    let p = Policy {
        abstract_syntaxes: AbstractSyntaxes::Only([CT_IMAGE.to_string()].into()),
        denied_abstract_syntaxes: ["1.2.840.10008.1.1".to_string()].into(),
        ..policy()
    };
    let got: Vec<(u8, R)> = reasons(&evaluate(&rq, &p)).into_iter().map(|(id, r, _)| (id, r)).collect();
    assert_eq!(
        got,
        vec![
            (1, R::UserRejection),
            (3, R::Acceptance),
            (5, R::AbstractSyntaxNotSupported),
            (7, R::TransferSyntaxesNotSupported),
        ]
    );
}

#[test]
fn empty_lists_mean_any_and_padding_is_ignored() {
    let mut rq = sample_rq();
    rq.called_ae_title = "ANYTHING".into();
    rq.presentation_contexts[0].transfer_syntaxes = vec![format!("{IMPLICIT_LE}\0")];
    let p = Policy::default();
    assert_eq!(reasons(&evaluate(&rq, &p))[0], (1, R::Acceptance, IMPLICIT_LE.to_string()));
}

#[test]
fn role_selection_grants_scp_only_when_allowed() {
    let mut rq = sample_rq();
    rq.user_variables
        .push(UserVariableItem::ScuScpRoleSelectionSubItem(CT_IMAGE.into(), RequestorRoles { scu: true, scp: true }));
    let roles = |p: &Policy| match evaluate(&rq, p) {
        Outcome::Accept(ac, _) => ac.user_variables.iter().find_map(|i| match i {
            UserVariableItem::ScuScpRoleSelectionSubItem(uid, roles) if uid == CT_IMAGE => Some(*roles),
            _ => None,
        }),
        Outcome::Reject(_) => None,
    };
    assert_eq!(roles(&policy()), Some(RequestorRoles { scu: true, scp: false }));
    let p = Policy { allow_requestor_scp_role: true, ..policy() };
    assert_eq!(roles(&p), Some(RequestorRoles { scu: true, scp: true }));
}

#[test]
fn user_identity_is_exposed() {
    let cases = [
        (UserIdentityType::Username, b"alice".to_vec(), vec![], Identity::Username("alice".into())),
        (
            UserIdentityType::UsernamePassword,
            b"alice".to_vec(),
            b"s3cret".to_vec(),
            Identity::UsernamePassword { username: "alice".into(), password: "s3cret".into() },
        ),
        (UserIdentityType::Jwt, b"eyJ.x.y".to_vec(), vec![], Identity::Jwt("eyJ.x.y".into())),
        (UserIdentityType::SamlAssertion, b"<saml/>".to_vec(), vec![], Identity::Saml(b"<saml/>".to_vec())),
        (UserIdentityType::KerberosServiceTicket, vec![1, 2], vec![], Identity::Kerberos(vec![1, 2])),
    ];
    for (kind, primary, secondary, want) in cases {
        let mut rq = sample_rq();
        rq.user_variables.push(UserVariableItem::UserIdentityItem(UserIdentity::new(true, kind, primary, secondary)));
        // Through the wire and back, as the acceptor would see it.
        let bytes = encode(&Pdu::AssociationRQ(rq)).unwrap();
        let Some((Pdu::AssociationRQ(rq), _)) = FrameReader::new(65536).next(&bytes).unwrap() else { panic!() };
        assert_eq!(user_identity(&rq), Some((want.clone(), true)));
        let Outcome::Accept(_, info) = evaluate(&rq, &policy()) else { panic!() };
        assert_eq!(info.identity, Some(want));
    }
    assert_eq!(user_identity(&sample_rq()), None);
    let debug = format!("{:?}", Identity::UsernamePassword { username: "a".into(), password: "pw".into() });
    assert!(!debug.contains("pw"));
}
