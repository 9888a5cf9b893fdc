//! The DICOM upper-layer state machine of PS3.8 §9.2 (Table 9-10), for both
//! the association-requestor and the association-acceptor.
//!
//! Events go in through [`Association::handle`] (and [`Association::on_timeout`]
//! for the ARTIM timer); everything the machine wants done comes out of
//! [`Association::poll_output`] as values. No sockets, no clock: `now` is
//! passed in and [`Association::next_deadline`] says when to call back.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationAC, AssociationRJ, AssociationRQ, PDataValue, Pdu,
};

use crate::DimseError;

/// The thirteen states of PS3.8 Table 9-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Idle.
    Sta1,
    /// Transport connection open, awaiting A-ASSOCIATE-RQ PDU (acceptor).
    Sta2,
    /// Awaiting the local A-ASSOCIATE response primitive (acceptor).
    Sta3,
    /// Awaiting transport connection opening to complete (requestor).
    Sta4,
    /// Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU (requestor).
    Sta5,
    /// Association established, ready for data transfer.
    Sta6,
    /// Awaiting A-RELEASE-RP PDU.
    Sta7,
    /// Awaiting the local A-RELEASE response primitive.
    Sta8,
    /// Release collision, requestor side: awaiting the local A-RELEASE response.
    Sta9,
    /// Release collision, acceptor side: awaiting A-RELEASE-RP PDU.
    Sta10,
    /// Release collision, requestor side: awaiting A-RELEASE-RP PDU.
    Sta11,
    /// Release collision, acceptor side: awaiting the local A-RELEASE response.
    Sta12,
    /// Awaiting transport connection close indication (association gone).
    Sta13,
}

/// Which end of the association we are. Fixed by the first event: an
/// A-ASSOCIATE request makes us the requestor, a transport connect
/// indication the acceptor. It decides AR-8 (Sta9 vs Sta10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent (or will send) the A-ASSOCIATE-RQ.
    Requestor,
    /// We received the A-ASSOCIATE-RQ.
    Acceptor,
}

/// An input to the state machine (PS3.8 Table 9-2), except ARTIM expiry
/// which is [`Association::on_timeout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Evt1: the local user asks to associate; the RQ is sent once the
    /// transport is up ([`Event::TransportConnectConfirm`]).
    AssociateRequest(AssociationRQ),
    /// Evt2: our outgoing transport connection is open.
    TransportConnectConfirm,
    /// Evt5: a peer connected to us.
    TransportConnectIndication,
    /// Evt7: the local user accepts the association (acceptor).
    AssociateAccept(AssociationAC),
    /// Evt8: the local user rejects the association (acceptor).
    AssociateReject(AssociationRJ),
    /// Evt9: the local user sends P-DATA.
    PDataRequest(Vec<PDataValue>),
    /// Evt11: the local user asks to release.
    ReleaseRequest,
    /// Evt14: the local user answers a release indication.
    ReleaseResponse,
    /// Evt15: the local user aborts.
    AbortRequest,
    /// Evt3/4/6/10/12/13/16 (and Evt19 for [`Pdu::Unknown`]): a PDU from the peer.
    PduReceived(Pdu),
    /// Evt19: bytes from the peer that framing could not turn into a PDU.
    /// The reason goes into the A-ABORT we send.
    InvalidPdu(AbortRQServiceProviderReason),
    /// Evt17: the transport connection closed.
    TransportClosed,
}

/// Why the local user is told the association was aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortIndication {
    /// A-ABORT: the peer's service user aborted (AA-3).
    PeerUser,
    /// A-P-ABORT: the peer's service provider aborted with this reason (AA-3).
    PeerProvider(AbortRQServiceProviderReason),
    /// A-P-ABORT: we aborted because of what the peer sent (AA-8).
    LocalProvider(AbortRQServiceProviderReason),
    /// A-P-ABORT: the transport closed under a live association (AA-4).
    TransportClosed,
}

/// A primitive delivered to the local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indication {
    /// A-ASSOCIATE indication: answer with [`Event::AssociateAccept`] or
    /// [`Event::AssociateReject`] (see `negotiate::evaluate`).
    AssociateRequest(AssociationRQ),
    /// A-ASSOCIATE confirmation (accept).
    AssociateAccepted(AssociationAC),
    /// A-ASSOCIATE confirmation (reject); the transport is being closed.
    AssociateRejected(AssociationRJ),
    /// P-DATA indication.
    PData(Vec<PDataValue>),
    /// A-RELEASE indication: answer with [`Event::ReleaseResponse`].
    ReleaseRequested,
    /// A-RELEASE confirmation.
    ReleaseConfirmed,
    /// A-ABORT or A-P-ABORT indication.
    Aborted(AbortIndication),
}

/// Something the machine wants done, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open the transport connection to the peer (AE-1), then feed
    /// [`Event::TransportConnectConfirm`].
    OpenTransport,
    /// Encode (`framing::encode`) and write this PDU.
    Send(Pdu),
    /// Deliver this to the local user.
    Indication(Indication),
    /// The ARTIM timer started; the deadline is [`Association::next_deadline`].
    StartArtim,
    /// The ARTIM timer stopped.
    StopArtim,
    /// Close the transport connection (after writing any queued PDUs).
    CloseTransport,
}

/// The actions of PS3.8 Table 9-6 .. 9-9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Ae1,
    Ae2,
    Ae3,
    Ae4,
    Ae5,
    Ae6,
    Ae7,
    Ae8,
    Dt1,
    Dt2,
    Ar1,
    Ar2,
    Ar3,
    Ar4,
    Ar5,
    Ar6,
    Ar7,
    Ar8,
    Ar9,
    Ar10,
    Aa1,
    Aa2,
    Aa3,
    Aa4,
    Aa5,
    Aa6,
    Aa7,
    Aa8,
}

/// Event identifiers of PS3.8 Table 9-2, the columns of the state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evt {
    AssociateRequest,  // Evt1
    ConnectConfirm,    // Evt2
    AcPdu,             // Evt3
    RjPdu,             // Evt4
    ConnectIndication, // Evt5
    RqPdu,             // Evt6
    AssociateAccept,   // Evt7
    AssociateReject,   // Evt8
    PDataRequest,      // Evt9
    PDataPdu,          // Evt10
    ReleaseRequest,    // Evt11
    ReleaseRqPdu,      // Evt12
    ReleaseRpPdu,      // Evt13
    ReleaseResponse,   // Evt14
    AbortRequest,      // Evt15
    AbortPdu,          // Evt16
    TransportClosed,   // Evt17
    ArtimExpired,      // Evt18
    InvalidPdu,        // Evt19
}

impl Evt {
    fn of(event: &Event) -> Evt {
        match event {
            Event::AssociateRequest(_) => Evt::AssociateRequest,
            Event::TransportConnectConfirm => Evt::ConnectConfirm,
            Event::TransportConnectIndication => Evt::ConnectIndication,
            Event::AssociateAccept(_) => Evt::AssociateAccept,
            Event::AssociateReject(_) => Evt::AssociateReject,
            Event::PDataRequest(_) => Evt::PDataRequest,
            Event::ReleaseRequest => Evt::ReleaseRequest,
            Event::ReleaseResponse => Evt::ReleaseResponse,
            Event::AbortRequest => Evt::AbortRequest,
            Event::InvalidPdu(_) => Evt::InvalidPdu,
            Event::TransportClosed => Evt::TransportClosed,
            Event::PduReceived(pdu) => match pdu {
                Pdu::AssociationRQ(_) => Evt::RqPdu,
                Pdu::AssociationAC(_) => Evt::AcPdu,
                Pdu::AssociationRJ(_) => Evt::RjPdu,
                Pdu::PData { .. } => Evt::PDataPdu,
                Pdu::ReleaseRQ => Evt::ReleaseRqPdu,
                Pdu::ReleaseRP => Evt::ReleaseRpPdu,
                Pdu::AbortRQ { .. } => Evt::AbortPdu,
                Pdu::Unknown { .. } => Evt::InvalidPdu,
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Evt::AssociateRequest => "A-ASSOCIATE request",
            Evt::ConnectConfirm => "transport connect confirm",
            Evt::AcPdu => "A-ASSOCIATE-AC PDU",
            Evt::RjPdu => "A-ASSOCIATE-RJ PDU",
            Evt::ConnectIndication => "transport connect indication",
            Evt::RqPdu => "A-ASSOCIATE-RQ PDU",
            Evt::AssociateAccept => "A-ASSOCIATE response (accept)",
            Evt::AssociateReject => "A-ASSOCIATE response (reject)",
            Evt::PDataRequest => "P-DATA request",
            Evt::PDataPdu => "P-DATA-TF PDU",
            Evt::ReleaseRequest => "A-RELEASE request",
            Evt::ReleaseRqPdu => "A-RELEASE-RQ PDU",
            Evt::ReleaseRpPdu => "A-RELEASE-RP PDU",
            Evt::ReleaseResponse => "A-RELEASE response",
            Evt::AbortRequest => "A-ABORT request",
            Evt::AbortPdu => "A-ABORT PDU",
            Evt::TransportClosed => "transport closed",
            Evt::ArtimExpired => "ARTIM expired",
            Evt::InvalidPdu => "invalid PDU",
        }
    }
}

/// The states in which an association exists or is being negotiated with a
/// transport up: where an unexpected PDU gets AA-8 and an A-ABORT PDU AA-3.
macro_rules! live {
    () => {
        State::Sta3
            | State::Sta5
            | State::Sta6
            | State::Sta7
            | State::Sta8
            | State::Sta9
            | State::Sta10
            | State::Sta11
            | State::Sta12
    };
}

/// Every PDU event: each is legal in one or two cells, AA-8 elsewhere in live states.
macro_rules! pdu_evt {
    () => {
        Evt::AcPdu | Evt::RjPdu | Evt::RqPdu | Evt::PDataPdu | Evt::ReleaseRqPdu | Evt::ReleaseRpPdu | Evt::InvalidPdu
    };
}

/// PS3.8 Table 9-10: the action for an event in a state, `None` where the
/// table has no entry. Specific cells first, then the abort rules.
fn lookup(state: State, evt: Evt) -> Option<Action> {
    use Action::*;
    use State::*;
    Some(match (evt, state) {
        (Evt::AssociateRequest, Sta1) => Ae1,
        (Evt::ConnectConfirm, Sta4) => Ae2,
        (Evt::AcPdu, Sta5) => Ae3,
        (Evt::RjPdu, Sta5) => Ae4,
        (Evt::ConnectIndication, Sta1) => Ae5,
        (Evt::RqPdu, Sta2) => Ae6,
        (Evt::AssociateAccept, Sta3) => Ae7,
        (Evt::AssociateReject, Sta3) => Ae8,
        (Evt::PDataRequest, Sta6) => Dt1,
        (Evt::PDataPdu, Sta6) => Dt2,
        (Evt::ReleaseRequest, Sta6) => Ar1,
        (Evt::ReleaseRqPdu, Sta6) => Ar2,
        (Evt::ReleaseRpPdu, Sta7 | Sta11) => Ar3,
        (Evt::ReleaseResponse, Sta8 | Sta12) => Ar4,
        (Evt::TransportClosed, Sta13) => Ar5,
        (Evt::PDataPdu, Sta7) => Ar6,
        (Evt::PDataRequest, Sta8) => Ar7,
        (Evt::ReleaseRqPdu, Sta7) => Ar8,
        (Evt::ReleaseResponse, Sta9) => Ar9,
        (Evt::ReleaseRpPdu, Sta10) => Ar10,
        // Abort rules.
        (Evt::AbortRequest, Sta3 | Sta5 | Sta6 | Sta7 | Sta8 | Sta9 | Sta10 | Sta11 | Sta12) => Aa1,
        (Evt::AcPdu | Evt::RjPdu | Evt::PDataPdu | Evt::ReleaseRqPdu | Evt::ReleaseRpPdu | Evt::InvalidPdu, Sta2) => {
            Aa1
        }
        (Evt::AbortRequest, Sta4) => Aa2,
        (Evt::AbortPdu | Evt::ArtimExpired, Sta2 | Sta13) => Aa2,
        (Evt::AbortPdu, live!()) => Aa3,
        (Evt::TransportClosed, Sta4 | live!()) => Aa4,
        (Evt::TransportClosed, Sta2) => Aa5,
        (Evt::RqPdu | Evt::InvalidPdu, Sta13) => Aa7,
        (Evt::AcPdu | Evt::RjPdu | Evt::PDataPdu | Evt::ReleaseRqPdu | Evt::ReleaseRpPdu, Sta13) => Aa6,
        (pdu_evt!(), live!()) => Aa8,
        _ => return None,
    })
}

/// One upper-layer association, either role. See the module docs.
#[derive(Debug)]
pub struct Association {
    state: State,
    role: Option<Role>,
    artim_timeout: Duration,
    artim_deadline: Option<Instant>,
    /// The RQ of Evt1, sent at AE-2.
    pending_rq: Option<AssociationRQ>,
    outputs: VecDeque<Output>,
}

impl Association {
    /// A new idle (Sta1) association whose ARTIM timer runs for `artim_timeout`.
    pub fn new(artim_timeout: Duration) -> Self {
        Association {
            state: State::Sta1,
            role: None,
            artim_timeout,
            artim_deadline: None,
            pending_rq: None,
            outputs: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Our role, once the first event has fixed it.
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// Whether P-DATA may be sent now (Sta6, or Sta8 after a release request
    /// from the peer: PS3.8 lets the receiver of A-RELEASE-RQ keep sending).
    pub fn can_send_data(&self) -> bool {
        matches!(self.state, State::Sta6 | State::Sta8)
    }

    /// When [`Association::on_timeout`] must be called, if ARTIM is running.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.artim_deadline
    }

    /// The next thing to do, in order. Drain after every `handle`/`on_timeout`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Evt18: call at or after [`Association::next_deadline`]. Returns whether
    /// the timer had actually expired (an early call is a no-op).
    pub fn on_timeout(&mut self, now: Instant) -> bool {
        match self.artim_deadline {
            Some(deadline) if now >= deadline => {
                self.artim_deadline = None;
                // Table 9-10 has an ARTIM entry only in Sta2 and Sta13, the
                // only states where the timer runs; a stale deadline elsewhere
                // is simply dropped.
                if let Some(action) = lookup(self.state, Evt::ArtimExpired) {
                    self.run(action, None, now);
                }
                true
            }
            _ => false,
        }
    }

    /// Feed one event. An event with no entry in Table 9-10 for the current
    /// state leaves the machine unchanged and returns
    /// [`DimseError::NotApplicable`]; every PDU from the peer has an entry in
    /// the states where a transport is up (unexpected ones lead to A-ABORT).
    pub fn handle(&mut self, event: Event, now: Instant) -> Result<(), DimseError> {
        let evt = Evt::of(&event);
        let action =
            lookup(self.state, evt).ok_or(DimseError::NotApplicable { state: self.state, event: evt.name() })?;
        self.run(action, Some(event), now);
        Ok(())
    }

    fn start_artim(&mut self, now: Instant) {
        self.artim_deadline = Some(now + self.artim_timeout);
        self.outputs.push_back(Output::StartArtim);
    }

    fn stop_artim(&mut self) {
        if self.artim_deadline.take().is_some() {
            self.outputs.push_back(Output::StopArtim);
        }
    }

    fn send(&mut self, pdu: Pdu) {
        self.outputs.push_back(Output::Send(pdu));
    }

    fn indicate(&mut self, indication: Indication) {
        self.outputs.push_back(Output::Indication(indication));
    }

    fn close(&mut self) {
        self.outputs.push_back(Output::CloseTransport);
    }

    /// The A-ABORT reason for a PDU that should not have been sent.
    fn protocol_reason(event: &Option<Event>) -> AbortRQServiceProviderReason {
        match event {
            Some(Event::InvalidPdu(reason)) => reason.clone(),
            Some(Event::PduReceived(Pdu::Unknown { .. })) => AbortRQServiceProviderReason::UnrecognizedPdu,
            _ => AbortRQServiceProviderReason::UnexpectedPdu,
        }
    }

    fn run(&mut self, action: Action, event: Option<Event>, now: Instant) {
        use State::*;
        let next = match action {
            Action::Ae1 => {
                self.role = Some(Role::Requestor);
                if let Some(Event::AssociateRequest(rq)) = event {
                    self.pending_rq = Some(rq);
                }
                self.outputs.push_back(Output::OpenTransport);
                Sta4
            }
            Action::Ae2 => {
                if let Some(rq) = self.pending_rq.take() {
                    self.send(Pdu::AssociationRQ(rq));
                }
                Sta5
            }
            Action::Ae3 => {
                if let Some(Event::PduReceived(Pdu::AssociationAC(ac))) = event {
                    self.indicate(Indication::AssociateAccepted(ac));
                }
                Sta6
            }
            Action::Ae4 => {
                if let Some(Event::PduReceived(Pdu::AssociationRJ(rj))) = event {
                    self.indicate(Indication::AssociateRejected(rj));
                }
                self.close();
                Sta1
            }
            Action::Ae5 => {
                self.role = Some(Role::Acceptor);
                self.start_artim(now);
                Sta2
            }
            Action::Ae6 => {
                // UL-level acceptability (protocol version, AE titles...) is
                // left to the user's negotiation, which can answer with RJ.
                self.stop_artim();
                if let Some(Event::PduReceived(Pdu::AssociationRQ(rq))) = event {
                    self.indicate(Indication::AssociateRequest(rq));
                }
                Sta3
            }
            Action::Ae7 => {
                if let Some(Event::AssociateAccept(ac)) = event {
                    self.send(Pdu::AssociationAC(ac));
                }
                Sta6
            }
            Action::Ae8 => {
                if let Some(Event::AssociateReject(rj)) = event {
                    self.send(Pdu::AssociationRJ(rj));
                }
                self.start_artim(now);
                Sta13
            }
            Action::Dt1 | Action::Ar7 => {
                if let Some(Event::PDataRequest(data)) = event {
                    self.send(Pdu::PData { data });
                }
                if action == Action::Dt1 {
                    Sta6
                } else {
                    Sta8
                }
            }
            Action::Dt2 | Action::Ar6 => {
                if let Some(Event::PduReceived(Pdu::PData { data })) = event {
                    self.indicate(Indication::PData(data));
                }
                if action == Action::Dt2 {
                    Sta6
                } else {
                    Sta7
                }
            }
            Action::Ar1 => {
                self.send(Pdu::ReleaseRQ);
                Sta7
            }
            Action::Ar2 => {
                self.indicate(Indication::ReleaseRequested);
                Sta8
            }
            Action::Ar3 => {
                self.indicate(Indication::ReleaseConfirmed);
                self.close();
                Sta1
            }
            Action::Ar4 => {
                self.send(Pdu::ReleaseRP);
                self.start_artim(now);
                Sta13
            }
            Action::Ar5 | Action::Aa5 => {
                self.stop_artim();
                Sta1
            }
            Action::Ar8 => {
                // Release collision: both sides sent A-RELEASE-RQ.
                self.indicate(Indication::ReleaseRequested);
                match self.role {
                    Some(Role::Requestor) => Sta9,
                    _ => Sta10,
                }
            }
            Action::Ar9 => {
                self.send(Pdu::ReleaseRP);
                Sta11
            }
            Action::Ar10 => {
                self.indicate(Indication::ReleaseConfirmed);
                Sta12
            }
            Action::Aa1 => {
                // PS3.8 names the service-user as source; for a protocol error
                // (Sta2) we say service-provider so the peer learns why.
                let source = if event == Some(Event::AbortRequest) {
                    AbortRQSource::ServiceUser
                } else {
                    AbortRQSource::ServiceProvider(Self::protocol_reason(&event))
                };
                self.send(Pdu::AbortRQ { source });
                self.start_artim(now);
                Sta13
            }
            Action::Aa2 => {
                self.stop_artim();
                self.close();
                Sta1
            }
            Action::Aa3 => {
                let indication = match event {
                    Some(Event::PduReceived(Pdu::AbortRQ { source: AbortRQSource::ServiceProvider(reason) })) => {
                        AbortIndication::PeerProvider(reason)
                    }
                    _ => AbortIndication::PeerUser,
                };
                self.indicate(Indication::Aborted(indication));
                self.close();
                Sta1
            }
            Action::Aa4 => {
                self.indicate(Indication::Aborted(AbortIndication::TransportClosed));
                Sta1
            }
            Action::Aa6 => Sta13,
            Action::Aa7 => {
                let reason = Self::protocol_reason(&event);
                self.send(Pdu::AbortRQ { source: AbortRQSource::ServiceProvider(reason) });
                Sta13
            }
            Action::Aa8 => {
                let reason = Self::protocol_reason(&event);
                self.send(Pdu::AbortRQ { source: AbortRQSource::ServiceProvider(reason.clone()) });
                self.indicate(Indication::Aborted(AbortIndication::LocalProvider(reason)));
                self.start_artim(now);
                Sta13
            }
        };
        self.state = next;
    }
}
