use std::time::{Duration, Instant};

use dicom_ul::pdu::{AbortRQServiceProviderReason, AbortRQSource, AssociationAC, PDataValue, PDataValueType, Pdu};

use super::sample_rq;
use crate::association::{AbortIndication, Association, Event, Indication, Output, Role, State};
use crate::negotiate::{evaluate, Outcome, Policy};
use crate::DimseError;

const ARTIM: Duration = Duration::from_secs(30);

fn outputs(a: &mut Association) -> Vec<Output> {
    std::iter::from_fn(|| a.poll_output()).collect()
}

fn step(a: &mut Association, event: Event, now: Instant) -> Vec<Output> {
    a.handle(event, now).unwrap();
    outputs(a)
}

fn ac() -> AssociationAC {
    match evaluate(&sample_rq(), &Policy::default()) {
        Outcome::Accept(ac, _) => *ac,
        Outcome::Reject(rj) => panic!("{rj:?}"),
    }
}

fn pdata() -> Vec<PDataValue> {
    vec![PDataValue {
        presentation_context_id: 1,
        value_type: PDataValueType::Command,
        is_last: true,
        data: vec![0; 4],
    }]
}

fn established_acceptor(now: Instant) -> Association {
    let mut a = Association::new(ARTIM);
    step(&mut a, Event::TransportConnectIndication, now);
    step(&mut a, Event::PduReceived(Pdu::AssociationRQ(sample_rq())), now);
    step(&mut a, Event::AssociateAccept(ac()), now);
    assert_eq!(a.state(), State::Sta6);
    a
}

fn established_requestor(now: Instant) -> Association {
    let mut a = Association::new(ARTIM);
    step(&mut a, Event::AssociateRequest(sample_rq()), now);
    step(&mut a, Event::TransportConnectConfirm, now);
    step(&mut a, Event::PduReceived(Pdu::AssociationAC(ac())), now);
    assert_eq!(a.state(), State::Sta6);
    a
}

fn unexpected() -> Output {
    Output::Send(Pdu::AbortRQ { source: AbortRQSource::ServiceProvider(AbortRQServiceProviderReason::UnexpectedPdu) })
}

#[test]
fn acceptor_normal_association_data_and_release() {
    let now = Instant::now();
    let mut a = Association::new(ARTIM);
    assert_eq!(step(&mut a, Event::TransportConnectIndication, now), vec![Output::StartArtim]);
    assert_eq!((a.state(), a.role()), (State::Sta2, Some(Role::Acceptor)));
    assert_eq!(a.next_deadline(), Some(now + ARTIM));

    let out = step(&mut a, Event::PduReceived(Pdu::AssociationRQ(sample_rq())), now);
    assert_eq!(out, vec![Output::StopArtim, Output::Indication(Indication::AssociateRequest(sample_rq()))]);
    assert_eq!((a.state(), a.next_deadline()), (State::Sta3, None));

    let out = step(&mut a, Event::AssociateAccept(ac()), now);
    assert_eq!(out, vec![Output::Send(Pdu::AssociationAC(ac()))]);
    assert!(a.can_send_data());

    let out = step(&mut a, Event::PduReceived(Pdu::PData { data: pdata() }), now);
    assert_eq!(out, vec![Output::Indication(Indication::PData(pdata()))]);
    let out = step(&mut a, Event::PDataRequest(pdata()), now);
    assert_eq!(out, vec![Output::Send(Pdu::PData { data: pdata() })]);

    let out = step(&mut a, Event::PduReceived(Pdu::ReleaseRQ), now);
    assert_eq!(out, vec![Output::Indication(Indication::ReleaseRequested)]);
    assert_eq!(a.state(), State::Sta8);
    // AR-7: the released side may still send data.
    step(&mut a, Event::PDataRequest(pdata()), now);
    let out = step(&mut a, Event::ReleaseResponse, now);
    assert_eq!(out, vec![Output::Send(Pdu::ReleaseRP), Output::StartArtim]);
    assert_eq!(a.state(), State::Sta13);
    // The requestor closes: AR-5.
    assert_eq!(step(&mut a, Event::TransportClosed, now), vec![Output::StopArtim]);
    assert_eq!(a.state(), State::Sta1);
}

#[test]
fn requestor_normal_association_and_release() {
    let now = Instant::now();
    let mut a = Association::new(ARTIM);
    assert_eq!(step(&mut a, Event::AssociateRequest(sample_rq()), now), vec![Output::OpenTransport]);
    assert_eq!((a.state(), a.role()), (State::Sta4, Some(Role::Requestor)));
    let out = step(&mut a, Event::TransportConnectConfirm, now);
    assert_eq!(out, vec![Output::Send(Pdu::AssociationRQ(sample_rq()))]);
    assert_eq!(a.state(), State::Sta5);
    let out = step(&mut a, Event::PduReceived(Pdu::AssociationAC(ac())), now);
    assert_eq!(out, vec![Output::Indication(Indication::AssociateAccepted(ac()))]);

    assert_eq!(step(&mut a, Event::ReleaseRequest, now), vec![Output::Send(Pdu::ReleaseRQ)]);
    assert_eq!(a.state(), State::Sta7);
    // AR-6: data still arriving while waiting for RP.
    let out = step(&mut a, Event::PduReceived(Pdu::PData { data: pdata() }), now);
    assert_eq!(out, vec![Output::Indication(Indication::PData(pdata()))]);
    let out = step(&mut a, Event::PduReceived(Pdu::ReleaseRP), now);
    assert_eq!(out, vec![Output::Indication(Indication::ReleaseConfirmed), Output::CloseTransport]);
    assert_eq!(a.state(), State::Sta1);
}

#[test]
fn requestor_rejected_closes() {
    let now = Instant::now();
    let mut a = Association::new(ARTIM);
    step(&mut a, Event::AssociateRequest(sample_rq()), now);
    step(&mut a, Event::TransportConnectConfirm, now);
    let rj = crate::negotiate::reject(crate::negotiate::RejectReason::CalledAeNotRecognized);
    let out = step(&mut a, Event::PduReceived(Pdu::AssociationRJ(rj.clone())), now);
    assert_eq!(out, vec![Output::Indication(Indication::AssociateRejected(rj)), Output::CloseTransport]);
    assert_eq!(a.state(), State::Sta1);
}

#[test]
fn acceptor_reject_waits_for_close_under_artim() {
    let now = Instant::now();
    let mut a = Association::new(ARTIM);
    step(&mut a, Event::TransportConnectIndication, now);
    step(&mut a, Event::PduReceived(Pdu::AssociationRQ(sample_rq())), now);
    let rj = crate::negotiate::reject(crate::negotiate::RejectReason::LocalLimitExceeded);
    let out = step(&mut a, Event::AssociateReject(rj.clone()), now);
    assert_eq!(out, vec![Output::Send(Pdu::AssociationRJ(rj)), Output::StartArtim]);
    assert_eq!(a.state(), State::Sta13);
    // The peer never closes: ARTIM fires (AA-2).
    assert!(a.on_timeout(now + ARTIM));
    assert_eq!(outputs(&mut a), vec![Output::CloseTransport]);
    assert_eq!(a.state(), State::Sta1);
}

#[test]
fn release_collision_requestor_side() {
    let now = Instant::now();
    let mut a = established_requestor(now);
    step(&mut a, Event::ReleaseRequest, now);
    // Both sent A-RELEASE-RQ: AR-8, requestor goes to Sta9.
    let out = step(&mut a, Event::PduReceived(Pdu::ReleaseRQ), now);
    assert_eq!(out, vec![Output::Indication(Indication::ReleaseRequested)]);
    assert_eq!(a.state(), State::Sta9);
    assert_eq!(step(&mut a, Event::ReleaseResponse, now), vec![Output::Send(Pdu::ReleaseRP)]);
    assert_eq!(a.state(), State::Sta11);
    let out = step(&mut a, Event::PduReceived(Pdu::ReleaseRP), now);
    assert_eq!(out, vec![Output::Indication(Indication::ReleaseConfirmed), Output::CloseTransport]);
    assert_eq!(a.state(), State::Sta1);
}

#[test]
fn release_collision_acceptor_side() {
    let now = Instant::now();
    let mut a = established_acceptor(now);
    step(&mut a, Event::ReleaseRequest, now);
    let out = step(&mut a, Event::PduReceived(Pdu::ReleaseRQ), now);
    assert_eq!(out, vec![Output::Indication(Indication::ReleaseRequested)]);
    assert_eq!(a.state(), State::Sta10);
    // The requestor answers first (its Sta9 → Sta11).
    let out = step(&mut a, Event::PduReceived(Pdu::ReleaseRP), now);
    assert_eq!(out, vec![Output::Indication(Indication::ReleaseConfirmed)]);
    assert_eq!(a.state(), State::Sta12);
    let out = step(&mut a, Event::ReleaseResponse, now);
    assert_eq!(out, vec![Output::Send(Pdu::ReleaseRP), Output::StartArtim]);
    assert_eq!(a.state(), State::Sta13);
    assert_eq!(step(&mut a, Event::TransportClosed, now), vec![Output::StopArtim]);
    assert_eq!(a.state(), State::Sta1);
}

#[test]
fn unexpected_pdu_in_established_state_aborts() {
    let now = Instant::now();
    let mut a = established_acceptor(now);
    // AA-8: a second A-ASSOCIATE-RQ mid-association.
    let out = step(&mut a, Event::PduReceived(Pdu::AssociationRQ(sample_rq())), now);
    assert_eq!(
        out,
        vec![
            unexpected(),
            Output::Indication(Indication::Aborted(AbortIndication::LocalProvider(
                AbortRQServiceProviderReason::UnexpectedPdu
            ))),
            Output::StartArtim,
        ]
    );
    assert_eq!(a.state(), State::Sta13);
    // AA-6: further PDUs ignored; AA-7: another RQ answered with A-ABORT.
    assert_eq!(step(&mut a, Event::PduReceived(Pdu::PData { data: pdata() }), now), vec![]);
    assert_eq!(step(&mut a, Event::PduReceived(Pdu::AssociationRQ(sample_rq())), now), vec![unexpected()]);
    // ARTIM expiry closes (AA-2), without sleeping.
    assert!(!a.on_timeout(now + ARTIM - Duration::from_millis(1)));
    assert!(a.on_timeout(now + ARTIM));
    assert_eq!(outputs(&mut a), vec![Output::CloseTransport]);
    assert_eq!(a.state(), State::Sta1);
}

#[test]
fn unexpected_pdu_before_association_aborts() {
    let now = Instant::now();
    let mut a = Association::new(ARTIM);
    step(&mut a, Event::TransportConnectIndication, now);
    // AA-1 in Sta2: P-DATA before any RQ.
    let later = now + Duration::from_secs(5);
    let out = step(&mut a, Event::PduReceived(Pdu::PData { data: pdata() }), later);
    assert_eq!(out, vec![unexpected(), Output::StartArtim]);
    assert_eq!((a.state(), a.next_deadline()), (State::Sta13, Some(later + ARTIM)));
}

#[test]
fn invalid_pdu_from_framing_aborts_with_its_reason() {
    let now = Instant::now();
    let mut a = established_requestor(now);
    let reason = DimseError::PduTooLarge { length: 1 << 30, max: 1 << 20 }.abort_source().unwrap();
    let AbortRQSource::ServiceProvider(reason) = reason else { unreachable!() };
    let out = step(&mut a, Event::InvalidPdu(reason.clone()), now);
    assert_eq!(out[0], Output::Send(Pdu::AbortRQ { source: AbortRQSource::ServiceProvider(reason) }));
    assert_eq!(a.state(), State::Sta13);
}

#[test]
fn artim_expires_when_no_rq_arrives() {
    let now = Instant::now();
    let mut a = Association::new(ARTIM);
    step(&mut a, Event::TransportConnectIndication, now);
    assert!(!a.on_timeout(now));
    assert!(outputs(&mut a).is_empty());
    assert!(a.on_timeout(now + ARTIM + Duration::from_secs(1)));
    assert_eq!(outputs(&mut a), vec![Output::CloseTransport]);
    assert_eq!((a.state(), a.next_deadline()), (State::Sta1, None));
}

#[test]
fn peer_abort_is_indicated_and_closes() {
    let now = Instant::now();
    let mut a = established_acceptor(now);
    let out = step(&mut a, Event::PduReceived(Pdu::AbortRQ { source: AbortRQSource::ServiceUser }), now);
    assert_eq!(out, vec![Output::Indication(Indication::Aborted(AbortIndication::PeerUser)), Output::CloseTransport]);
    assert_eq!(a.state(), State::Sta1);
}

#[test]
fn local_abort_sends_user_abort() {
    let now = Instant::now();
    let mut a = established_requestor(now);
    let out = step(&mut a, Event::AbortRequest, now);
    assert_eq!(out, vec![Output::Send(Pdu::AbortRQ { source: AbortRQSource::ServiceUser }), Output::StartArtim]);
}

#[test]
fn transport_loss_is_a_provider_abort() {
    let now = Instant::now();
    let mut a = established_acceptor(now);
    let out = step(&mut a, Event::TransportClosed, now);
    assert_eq!(out, vec![Output::Indication(Indication::Aborted(AbortIndication::TransportClosed))]);
    assert_eq!(a.state(), State::Sta1);
}

#[test]
fn local_primitive_in_wrong_state_is_refused_without_change() {
    let now = Instant::now();
    let mut a = Association::new(ARTIM);
    let err = a.handle(Event::PDataRequest(pdata()), now).unwrap_err();
    assert_eq!(err, DimseError::NotApplicable { state: State::Sta1, event: "P-DATA request" });
    assert_eq!(a.state(), State::Sta1);
    let mut a = established_acceptor(now);
    assert!(a.handle(Event::AssociateAccept(ac()), now).is_err());
    assert_eq!(a.state(), State::Sta6);
}
