use crate::command::{priority, Command, CommandField, VERIFICATION};
use crate::DimseError;

fn element(element: u16, value: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0];
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn with_group_length(body: Vec<u8>) -> Vec<u8> {
    let mut out = element(0x0000, &(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

fn echo_rq_bytes() -> Vec<u8> {
    let mut body = element(0x0002, b"1.2.840.10008.1.1\0");
    body.extend(element(0x0100, &[0x30, 0x00]));
    body.extend(element(0x0110, &[0x01, 0x00]));
    body.extend(element(0x0800, &[0x01, 0x01]));
    with_group_length(body)
}

#[test]
fn echo_rq_encodes_to_the_standard_bytes() {
    let bytes = Command::echo_rq(1).encode();
    assert_eq!(bytes, echo_rq_bytes());
    assert_eq!(&bytes[..12], &[0, 0, 0, 0, 4, 0, 0, 0, 56, 0, 0, 0]);
    assert_eq!(Command::decode(&bytes).unwrap(), Command::echo_rq(1));
}

#[test]
fn echo_rsp_answers_the_rq() {
    let rsp = Command::response_to(&Command::echo_rq(7), 0x0000);
    assert_eq!(rsp.field, CommandField::CEchoRsp);
    assert_eq!(rsp.message_id_being_responded_to, Some(7));
    assert_eq!(rsp.affected_sop_class_uid.as_deref(), Some(VERIFICATION));
    assert_eq!(Command::decode(&rsp.encode()).unwrap(), rsp);
}

#[test]
fn every_field_round_trips() {
    let cmd = Command {
        message_id: Some(3),
        affected_sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.2".into()),
        affected_sop_instance_uid: Some("1.2.3.4.5".into()),
        requested_sop_class_uid: Some("1.2.3".into()),
        requested_sop_instance_uid: Some("1.2.3.4".into()),
        priority: Some(priority::HIGH),
        has_data_set: true,
        status: Some(0xFF00),
        error_comment: Some("odd".into()),
        move_destination: Some("ARCHIVE".into()),
        remaining_suboperations: Some(4),
        completed_suboperations: Some(5),
        failed_suboperations: Some(6),
        warning_suboperations: Some(7),
        move_originator_ae_title: Some("VIEWER".into()),
        move_originator_message_id: Some(9),
        ..Command::new(CommandField::CStoreRq)
    };
    let bytes = cmd.encode();
    assert_eq!(bytes.len() % 2, 0);
    assert_eq!(Command::decode(&bytes).unwrap(), cmd);
    // AE titles go out space-padded to 16, UIDs NUL-padded to even length.
    assert!(bytes.windows(16).any(|w| w == b"ARCHIVE         "));
    assert!(bytes.windows(10).any(|w| w == b"1.2.3.4.5\0"));
}

#[test]
fn all_known_command_fields_map_both_ways() {
    for code in [0x0001, 0x8001, 0x0010, 0x8010, 0x0020, 0x8020, 0x0021, 0x8021, 0x0030, 0x8030, 0x0FFF, 0x0140] {
        assert_eq!(CommandField::from_code(code).code(), code);
    }
    assert!(CommandField::CMoveRsp.is_response() && !CommandField::CCancelRq.is_response());
}

#[test]
fn unknown_group_zero_elements_are_skipped() {
    let mut body = element(0x0100, &[0x30, 0x80]);
    body.extend(element(0x0120, &[0x01, 0x00]));
    body.extend(element(0x0800, &[0x01, 0x01]));
    body.extend(element(0x0901, &[0x00, 0x00, 0x00, 0x00])); // Offending Element
    body.extend(element(0x0900, &[0x00, 0x00]));
    let cmd = Command::decode(&with_group_length(body)).unwrap();
    assert_eq!((cmd.field, cmd.status, cmd.has_data_set), (CommandField::CEchoRsp, Some(0), false));
}

#[test]
fn malformed_command_sets_are_errors() {
    let good = echo_rq_bytes();
    let mut wrong_length = good.clone();
    wrong_length[8] = 57;
    let mut other_group = good.clone();
    other_group.extend([0x08, 0x00, 0x00, 0x00]);
    let mut no_field = element(0x0110, &[1, 0]);
    no_field.extend(element(0x0800, &[1, 1]));
    let bad_us = with_group_length(element(0x0100, &[0x30]));
    let overrun = with_group_length([0, 0, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF].to_vec());
    let cases = [
        ("empty", vec![]),
        ("truncated header", good[..5].to_vec()),
        ("group length mismatch", wrong_length),
        ("truncated body", good[..good.len() - 1].to_vec()),
        ("group length missing", good[12..].to_vec()),
        ("trailing other group", other_group),
        ("no command field", with_group_length(no_field)),
        ("US of one byte", bad_us),
        ("undefined length", overrun),
    ];
    for (name, bytes) in cases {
        assert!(matches!(Command::decode(&bytes), Err(DimseError::MalformedCommand(_))), "{name}");
    }
}

#[test]
fn text_values_lose_their_padding_and_keep_everything_else() {
    let cases: [(&[u8], &str); 7] = [
        (b"1.2.840.10008.1.1\0", "1.2.840.10008.1.1"),
        (b"  STORESCP  ", "STORESCP"),
        (b"A B \0 \0", "A B"),
        (b" \0a", "\0a"), // leading NUL is not padding
        (b"\0\0  ", ""),
        (b"", ""),
        (b" D\xC3\xBCr ", "D\u{fc}r"),
    ];
    for (value, want) in cases {
        let mut body = element(0x0100, &[0x30, 0x80]);
        body.extend(element(0x0600, value)); // Move Destination
        body.extend(element(0x0800, &[0x01, 0x01]));
        let cmd = Command::decode(&with_group_length(body)).unwrap();
        assert_eq!(cmd.move_destination.as_deref(), Some(want), "{value:?}");
    }
    // bytes that are not UTF-8 are replaced, never an error
    let mut body = element(0x0100, &[0x30, 0x80]);
    body.extend(element(0x0600, b"X\xFF "));
    body.extend(element(0x0800, &[0x01, 0x01]));
    let cmd = Command::decode(&with_group_length(body)).unwrap();
    assert_eq!(cmd.move_destination.as_deref(), Some("X\u{fffd}"));
}
