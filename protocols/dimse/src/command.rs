//! DIMSE command sets (PS3.7 §9.3, §E.1): group 0000 elements in implicit VR
//! little endian, always preceded by Command Group Length (0000,0000).

use crate::DimseError;

/// The Command Field (0000,0100) values this crate knows; others are kept as
/// [`CommandField::Other`] so a relay can pass them through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandField {
    /// C-STORE-RQ (0001H).
    CStoreRq,
    /// C-STORE-RSP (8001H).
    CStoreRsp,
    /// C-GET-RQ (0010H).
    CGetRq,
    /// C-GET-RSP (8010H).
    CGetRsp,
    /// C-FIND-RQ (0020H).
    CFindRq,
    /// C-FIND-RSP (8020H).
    CFindRsp,
    /// C-MOVE-RQ (0021H).
    CMoveRq,
    /// C-MOVE-RSP (8021H).
    CMoveRsp,
    /// C-ECHO-RQ (0030H).
    CEchoRq,
    /// C-ECHO-RSP (8030H).
    CEchoRsp,
    /// C-CANCEL-RQ (0FFFH).
    CCancelRq,
    /// Any other value (N-services, private).
    Other(u16),
}

impl CommandField {
    /// The wire value.
    pub fn code(self) -> u16 {
        match self {
            CommandField::CStoreRq => 0x0001,
            CommandField::CStoreRsp => 0x8001,
            CommandField::CGetRq => 0x0010,
            CommandField::CGetRsp => 0x8010,
            CommandField::CFindRq => 0x0020,
            CommandField::CFindRsp => 0x8020,
            CommandField::CMoveRq => 0x0021,
            CommandField::CMoveRsp => 0x8021,
            CommandField::CEchoRq => 0x0030,
            CommandField::CEchoRsp => 0x8030,
            CommandField::CCancelRq => 0x0FFF,
            CommandField::Other(code) => code,
        }
    }

    /// The field for a wire value.
    pub fn from_code(code: u16) -> Self {
        match code {
            0x0001 => CommandField::CStoreRq,
            0x8001 => CommandField::CStoreRsp,
            0x0010 => CommandField::CGetRq,
            0x8010 => CommandField::CGetRsp,
            0x0020 => CommandField::CFindRq,
            0x8020 => CommandField::CFindRsp,
            0x0021 => CommandField::CMoveRq,
            0x8021 => CommandField::CMoveRsp,
            0x0030 => CommandField::CEchoRq,
            0x8030 => CommandField::CEchoRsp,
            0x0FFF => CommandField::CCancelRq,
            other => CommandField::Other(other),
        }
    }

    /// The PS3.7 name ("C-STORE-RQ", ...; N-services by name too).
    pub fn name(self) -> &'static str {
        match self.code() {
            0x0001 => "C-STORE-RQ",
            0x8001 => "C-STORE-RSP",
            0x0010 => "C-GET-RQ",
            0x8010 => "C-GET-RSP",
            0x0020 => "C-FIND-RQ",
            0x8020 => "C-FIND-RSP",
            0x0021 => "C-MOVE-RQ",
            0x8021 => "C-MOVE-RSP",
            0x0030 => "C-ECHO-RQ",
            0x8030 => "C-ECHO-RSP",
            0x0FFF => "C-CANCEL-RQ",
            0x0100 => "N-EVENT-REPORT-RQ",
            0x8100 => "N-EVENT-REPORT-RSP",
            0x0110 => "N-GET-RQ",
            0x8110 => "N-GET-RSP",
            0x0120 => "N-SET-RQ",
            0x8120 => "N-SET-RSP",
            0x0130 => "N-ACTION-RQ",
            0x8130 => "N-ACTION-RSP",
            0x0140 => "N-CREATE-RQ",
            0x8140 => "N-CREATE-RSP",
            0x0150 => "N-DELETE-RQ",
            0x8150 => "N-DELETE-RSP",
            _ => "UNKNOWN",
        }
    }

    /// Whether this is a response (bit 15 set).
    pub fn is_response(self) -> bool {
        self.code() & 0x8000 != 0
    }
}

/// Command Data Set Type (0000,0800) value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;
/// The value we write when a data set follows (any value but 0101H means so).
pub const DATA_SET_PRESENT: u16 = 0x0001;

/// Priority (0000,0700) values.
pub mod priority {
    /// MEDIUM.
    pub const MEDIUM: u16 = 0x0000;
    /// HIGH.
    pub const HIGH: u16 = 0x0001;
    /// LOW.
    pub const LOW: u16 = 0x0002;
}

/// A DIMSE command set. Optional elements are `None` when absent; which
/// ones a given command needs is PS3.7's business, not checked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Command Field (0000,0100).
    pub field: CommandField,
    /// Message ID (0000,0110), in requests.
    pub message_id: Option<u16>,
    /// Message ID Being Responded To (0000,0120), in responses.
    pub message_id_being_responded_to: Option<u16>,
    /// Affected SOP Class UID (0000,0002).
    pub affected_sop_class_uid: Option<String>,
    /// Requested SOP Class UID (0000,0003).
    pub requested_sop_class_uid: Option<String>,
    /// Affected SOP Instance UID (0000,1000).
    pub affected_sop_instance_uid: Option<String>,
    /// Requested SOP Instance UID (0000,1001).
    pub requested_sop_instance_uid: Option<String>,
    /// Priority (0000,0700), see [`priority`].
    pub priority: Option<u16>,
    /// Command Data Set Type (0000,0800) != 0101H.
    pub has_data_set: bool,
    /// Status (0000,0900), in responses.
    pub status: Option<u16>,
    /// Error Comment (0000,0902).
    pub error_comment: Option<String>,
    /// Move Destination (0000,0600), in C-MOVE-RQ.
    pub move_destination: Option<String>,
    /// Number of Remaining Sub-operations (0000,1020).
    pub remaining_suboperations: Option<u16>,
    /// Number of Completed Sub-operations (0000,1021).
    pub completed_suboperations: Option<u16>,
    /// Number of Failed Sub-operations (0000,1022).
    pub failed_suboperations: Option<u16>,
    /// Number of Warning Sub-operations (0000,1023).
    pub warning_suboperations: Option<u16>,
    /// Move Originator Application Entity Title (0000,1030), in a C-STORE-RQ
    /// made on behalf of a C-MOVE.
    pub move_originator_ae_title: Option<String>,
    /// Move Originator Message ID (0000,1031).
    pub move_originator_message_id: Option<u16>,
}

impl Command {
    /// A command with only the Command Field set and no data set.
    pub fn new(field: CommandField) -> Self {
        Command {
            field,
            message_id: None,
            message_id_being_responded_to: None,
            affected_sop_class_uid: None,
            requested_sop_class_uid: None,
            affected_sop_instance_uid: None,
            requested_sop_instance_uid: None,
            priority: None,
            has_data_set: false,
            status: None,
            error_comment: None,
            move_destination: None,
            remaining_suboperations: None,
            completed_suboperations: None,
            failed_suboperations: None,
            warning_suboperations: None,
            move_originator_ae_title: None,
            move_originator_message_id: None,
        }
    }

    /// C-ECHO-RQ with the Verification SOP Class.
    pub fn echo_rq(message_id: u16) -> Self {
        Command {
            message_id: Some(message_id),
            affected_sop_class_uid: Some(VERIFICATION.to_string()),
            ..Command::new(CommandField::CEchoRq)
        }
    }

    /// The response to `rq` with `status`: field with bit 15 set, message ID
    /// and affected SOP class/instance echoed, no data set.
    pub fn response_to(rq: &Command, status: u16) -> Self {
        Command {
            message_id_being_responded_to: rq.message_id,
            affected_sop_class_uid: rq.affected_sop_class_uid.clone(),
            affected_sop_instance_uid: rq.affected_sop_instance_uid.clone(),
            status: Some(status),
            ..Command::new(CommandField::from_code(rq.field.code() | 0x8000))
        }
    }

    /// Encode as a command set, Command Group Length first, elements in
    /// ascending tag order.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        put_uid(&mut body, 0x0002, &self.affected_sop_class_uid);
        put_uid(&mut body, 0x0003, &self.requested_sop_class_uid);
        put_us(&mut body, 0x0100, Some(self.field.code()));
        put_us(&mut body, 0x0110, self.message_id);
        put_us(&mut body, 0x0120, self.message_id_being_responded_to);
        put_ae(&mut body, 0x0600, &self.move_destination);
        put_us(&mut body, 0x0700, self.priority);
        put_us(&mut body, 0x0800, Some(if self.has_data_set { DATA_SET_PRESENT } else { NO_DATA_SET }));
        put_us(&mut body, 0x0900, self.status);
        put_text(&mut body, 0x0902, &self.error_comment, b' ');
        put_uid(&mut body, 0x1000, &self.affected_sop_instance_uid);
        put_uid(&mut body, 0x1001, &self.requested_sop_instance_uid);
        put_us(&mut body, 0x1020, self.remaining_suboperations);
        put_us(&mut body, 0x1021, self.completed_suboperations);
        put_us(&mut body, 0x1022, self.failed_suboperations);
        put_us(&mut body, 0x1023, self.warning_suboperations);
        put_ae(&mut body, 0x1030, &self.move_originator_ae_title);
        put_us(&mut body, 0x1031, self.move_originator_message_id);

        let mut out = Vec::with_capacity(body.len() + 12);
        put_header(&mut out, 0x0000, 4);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decode a command set. Never panics; unknown group-0000 elements are
    /// skipped; anything outside group 0000, a missing or wrong Command Group
    /// Length, or a missing Command Field is an error.
    pub fn decode(bytes: &[u8]) -> Result<Command, DimseError> {
        let mut elements = Elements { rest: bytes };
        let (tag, value) = elements.next().ok_or(DimseError::MalformedCommand("empty command set"))??;
        if tag != 0x0000 {
            return Err(DimseError::MalformedCommand("command group length (0000,0000) must come first"));
        }
        let group_length = ul(value)?;
        if group_length as usize != elements.rest.len() {
            return Err(DimseError::MalformedCommand("command group length does not match the command set"));
        }
        let mut field = None;
        let mut cmd = Command::new(CommandField::Other(0));
        let mut data_set_type = None;
        for element in elements {
            let (tag, value) = element?;
            match tag {
                0x0000 => return Err(DimseError::MalformedCommand("repeated command group length")),
                0x0002 => cmd.affected_sop_class_uid = Some(text(value)),
                0x0003 => cmd.requested_sop_class_uid = Some(text(value)),
                0x0100 => field = Some(us(value)?),
                0x0110 => cmd.message_id = Some(us(value)?),
                0x0120 => cmd.message_id_being_responded_to = Some(us(value)?),
                0x0600 => cmd.move_destination = Some(text(value)),
                0x0700 => cmd.priority = Some(us(value)?),
                0x0800 => data_set_type = Some(us(value)?),
                0x0900 => cmd.status = Some(us(value)?),
                0x0902 => cmd.error_comment = Some(text(value)),
                0x1000 => cmd.affected_sop_instance_uid = Some(text(value)),
                0x1001 => cmd.requested_sop_instance_uid = Some(text(value)),
                0x1020 => cmd.remaining_suboperations = Some(us(value)?),
                0x1021 => cmd.completed_suboperations = Some(us(value)?),
                0x1022 => cmd.failed_suboperations = Some(us(value)?),
                0x1023 => cmd.warning_suboperations = Some(us(value)?),
                0x1030 => cmd.move_originator_ae_title = Some(text(value)),
                0x1031 => cmd.move_originator_message_id = Some(us(value)?),
                _ => {}
            }
        }
        cmd.field = CommandField::from_code(field.ok_or(DimseError::MalformedCommand("missing command field"))?);
        cmd.has_data_set =
            data_set_type.ok_or(DimseError::MalformedCommand("missing command data set type"))? != NO_DATA_SET;
        Ok(cmd)
    }
}

/// Verification SOP Class UID.
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// Iterates (element number, value) over group-0000 elements.
struct Elements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<(u16, &'a [u8]), DimseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((header, after)) = self.rest.split_first_chunk::<8>() else {
            self.rest = &[];
            return Some(Err(DimseError::MalformedCommand("truncated element header")));
        };
        let group = u16::from_le_bytes([header[0], header[1]]);
        let element = u16::from_le_bytes([header[2], header[3]]);
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if group != 0x0000 {
            self.rest = &[];
            return Some(Err(DimseError::MalformedCommand("element outside group 0000")));
        }
        // Also rejects undefined length (FFFFFFFFH), never legal here.
        if length > after.len() {
            self.rest = &[];
            return Some(Err(DimseError::MalformedCommand("element value runs past the end")));
        }
        let (value, rest) = after.split_at(length);
        self.rest = rest;
        Some(Ok((element, value)))
    }
}

fn us(value: &[u8]) -> Result<u16, DimseError> {
    let bytes: [u8; 2] = value.try_into().map_err(|_| DimseError::MalformedCommand("US value is not 2 bytes"))?;
    Ok(u16::from_le_bytes(bytes))
}

fn ul(value: &[u8]) -> Result<u32, DimseError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| DimseError::MalformedCommand("UL value is not 4 bytes"))?;
    Ok(u32::from_le_bytes(bytes))
}

/// UI/AE/LO values: drop the NUL/space padding; non-UTF-8 bytes are replaced.
fn text(value: &[u8]) -> String {
    // The padding is ASCII, so it goes first; `from_utf8` (fast on ASCII,
    // which command-set UIDs and AE titles are) before the lossy fallback,
    // whose chunked scan cost ~1,000 instructions per value (callgrind).
    let end = value.iter().rposition(|&b| b != 0 && b != b' ').map_or(0, |i| i + 1);
    let start = value[..end].iter().position(|&b| b != b' ').unwrap_or(end);
    match std::str::from_utf8(&value[start..end]) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(&value[start..end]).into_owned(),
    }
}

fn put_header(out: &mut Vec<u8>, element: u16, length: u32) {
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
}

fn put_us(out: &mut Vec<u8>, element: u16, value: Option<u16>) {
    if let Some(v) = value {
        put_header(out, element, 2);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Values are padded to even length: UIDs with NUL, text with space.
fn put_text(out: &mut Vec<u8>, element: u16, value: &Option<String>, pad: u8) {
    if let Some(v) = value {
        let padded = v.len() + v.len() % 2;
        put_header(out, element, padded as u32);
        out.extend_from_slice(v.as_bytes());
        if padded > v.len() {
            out.push(pad);
        }
    }
}

fn put_uid(out: &mut Vec<u8>, element: u16, value: &Option<String>) {
    put_text(out, element, value, 0);
}

/// AE titles are written as their 16-character space-padded form so that
/// peers comparing fixed-width fields match.
fn put_ae(out: &mut Vec<u8>, element: u16, value: &Option<String>) {
    put_text(out, element, &value.as_ref().map(|ae| format!("{:<16}", ae.trim())), b' ');
}
