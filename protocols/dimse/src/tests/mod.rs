mod association;
mod command;
mod framing;
mod negotiate;
mod pdv;
mod random;

use dicom_ul::pdu::{AssociationRQ, PresentationContextProposed, UserVariableItem};

pub(crate) const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub(crate) const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub(crate) const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

/// A storescu-like A-ASSOCIATE-RQ: Verification + CT Image Storage.
pub(crate) fn sample_rq() -> AssociationRQ {
    AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "STORESCU".into(),
        called_ae_title: "HARMONY".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![
            PresentationContextProposed {
                id: 1,
                abstract_syntax: "1.2.840.10008.1.1".into(),
                transfer_syntaxes: vec![IMPLICIT_LE.into()],
            },
            PresentationContextProposed {
                id: 3,
                abstract_syntax: CT_IMAGE.into(),
                transfer_syntaxes: vec![IMPLICIT_LE.into(), EXPLICIT_LE.into()],
            },
        ],
        user_variables: vec![
            UserVariableItem::MaxLength(16384),
            UserVariableItem::ImplementationClassUID("1.2.3.4".into()),
        ],
    }
}
