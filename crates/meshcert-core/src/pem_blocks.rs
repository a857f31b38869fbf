//! A tolerant PEM reader with precise errors.
//!
//! Operators paste PEM from many places: files with CRLF or old Mac CR-only line endings or a
//! UTF-8 byte order mark, YAML with indentation, `openssl pkcs12` output with "Bag Attributes"
//! between blocks. All of that is accepted and the text outside the BEGIN/END lines is dropped.
//! What cannot be PEM gets an error that names what the input looks like instead: DER
//! (`not_pem`), no BEGIN line at all (`no_pem_block`), or a broken block (`malformed_pem`).

use base64::Engine as _;

use crate::validate::{Field, UploadError};

/// One decoded PEM block.
#[derive(Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label between `BEGIN ` and the dashes, such as `CERTIFICATE` or `PRIVATE KEY`.
    pub label: String,
    /// RFC 1421 headers such as `Proc-Type: 4,ENCRYPTED`, in input order.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub der: Vec<u8>,
    /// Position of the block in its input, starting at 1.
    pub position: usize,
}

impl std::fmt::Debug for PemBlock {
    // The body of a key block is secret, so only the label and position are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemBlock")
            .field("label", &self.label)
            .field("position", &self.position)
            .field("len", &self.der.len())
            .finish()
    }
}

impl PemBlock {
    /// Returns whether the block contains a private key of any encoding, encrypted or not.
    pub fn is_private_key(&self) -> bool {
        self.label.ends_with("PRIVATE KEY")
    }

    /// Returns whether the block is an X.509 certificate.
    pub fn is_certificate(&self) -> bool {
        self.label == "CERTIFICATE" || self.label == "X509 CERTIFICATE"
    }
}

/// Decodes every PEM block of `input`, the text of the request field `field`.
///
/// # Errors
///
/// `empty_input` for an empty or blank input, `not_pem` for binary input such as DER (also after
/// a lossy UTF-8 conversion), and `no_pem_block` for text without a BEGIN line. `malformed_pem`
/// for a block without its END line, with a mismatched END label, or with a body that is not
/// base64.
pub fn parse(field: Field, input: &[u8]) -> Result<Vec<PemBlock>, UploadError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(UploadError::EmptyInput { field });
    }

    // DER starts with a SEQUENCE tag (0x30); any other binary input has control bytes or is not
    // UTF-8. Both are reported as "not PEM" so the operator knows to convert, not to re-paste.
    let text = match std::str::from_utf8(input) {
        Ok(text) if !text.bytes().any(|b| b.is_ascii_control() && !matches!(b, b'\n' | b'\r' | b'\t')) => text,
        _ => return Err(UploadError::NotPem { field }),
    };

    // CRLF, LF and a lone CR (classic Mac OS) all end a line.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");

    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim).enumerate();
    while let Some((line_index, line)) = lines.next() {
        let position = blocks.len() + 1;
        let Some(label) = boundary_label(line, "BEGIN") else {
            if line.starts_with("-----BEGIN ") {
                // The rest of the line may be a private key, so the message never quotes it.
                return Err(UploadError::MalformedPem { field, position, reason: run_on_reason(line, line_index) });
            }
            continue;
        };

        let mut headers = Vec::new();
        let mut body = String::new();
        let mut ended = false;
        for (_, line) in lines.by_ref() {
            if let Some(end_label) = boundary_label(line, "END") {
                if end_label != label {
                    return Err(UploadError::MalformedPem {
                        field,
                        position,
                        reason: format!("the block that begins with {label:?} ends with {end_label:?}"),
                    });
                }
                ended = true;
                break;
            }
            if boundary_label(line, "BEGIN").is_some() {
                break;
            }
            // Base64 has no ':', so a line with one is an RFC 1421 header such as Proc-Type.
            match line.split_once(':') {
                Some((name, value)) => headers.push((name.trim().to_string(), value.trim().to_string())),
                None => body.push_str(line),
            }
        }
        if !ended {
            return Err(UploadError::MalformedPem {
                field,
                position,
                reason: format!(
                    "the block \"-----BEGIN {label}-----\" that starts on line {} has no \"-----END {label}-----\" line",
                    line_index + 1
                ),
            });
        }

        let der = base64::engine::general_purpose::STANDARD.decode(body.as_bytes()).map_err(|error| {
            UploadError::MalformedPem {
                field,
                position,
                reason: format!("the body of the {label} block is not valid base64 ({error})"),
            }
        })?;
        if der.is_empty() {
            return Err(UploadError::MalformedPem {
                field,
                position,
                reason: format!("the {label} block is empty"),
            });
        }
        blocks.push(PemBlock { label: label.to_string(), headers, der, position });
    }

    if blocks.is_empty() {
        // A client that turns binary input into a string with `String::from_utf8_lossy` replaces
        // each invalid UTF-8 sequence with U+FFFD, so DER that arrives as a JSON string contains
        // it. Text outside PEM blocks is ignored, so this matters only when no block was found.
        if text.contains(char::REPLACEMENT_CHARACTER) {
            return Err(UploadError::NotPem { field });
        }
        return Err(UploadError::NoPemBlock { field });
    }
    Ok(blocks)
}

/// Encodes DER as a PEM block with LF line endings and 64-character lines, the form openssl writes.
pub fn encode(label: &str, der: &[u8]) -> String {
    let block = pem::Pem::new(label, der);
    pem::encode_config(&block, pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}

/// Reads the label of a `-----BEGIN LABEL-----` or `-----END LABEL-----` line. Labels are
/// upper-case words (RFC 7468), so a line that carries more, such as a whole block whose line
/// breaks were lost, is not a boundary.
fn boundary_label<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    let rest = line.strip_prefix("-----")?.strip_prefix(kind)?.strip_prefix(' ')?;
    let label = rest.strip_suffix("-----")?.trim();
    let plain = !label.is_empty() && label.len() <= 64 && label.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
    plain.then_some(label)
}

/// Explains a BEGIN line that runs on into the block, without quoting it.
fn run_on_reason(line: &str, line_index: usize) -> String {
    let cause = if line.contains("\\n") {
        "the text contains the two characters \\n where line breaks belong (decode the JSON or shell escaping once more)"
    } else {
        "the line breaks were lost (for example by a single-line form field or `echo` without quotes)"
    };
    format!(
        "the BEGIN line on line {} runs on into the rest of the block, because {cause}; upload the PEM text with its line breaks, written as \\n inside a JSON string",
        line_index + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "MAMCAQE=";

    fn block(label: &str) -> String {
        format!("-----BEGIN {label}-----\n{BODY}\n-----END {label}-----\n")
    }

    fn code(result: Result<Vec<PemBlock>, UploadError>) -> &'static str {
        result.expect_err("expected an error").code()
    }

    #[test]
    fn one_line_block_is_malformed_and_not_quoted() {
        let one_line = block("PRIVATE KEY").replace('\n', "");
        let escaped = block("PRIVATE KEY").replace('\n', "\\n");

        for input in [one_line, escaped] {
            let error = parse(Field::PrivateKey, input.as_bytes()).unwrap_err();

            assert_eq!(error.code(), "malformed_pem", "{input}");
            assert!(!error.to_string().contains(BODY), "{error}");
            assert!(error.to_string().contains("line breaks"), "{error}");
        }
    }

    #[test]
    fn parse_accepts_crlf_bom_and_indentation() {
        let input = format!("\u{feff}  {}", block("CERTIFICATE").replace('\n', "\r\n    "));

        let blocks = parse(Field::Certificate, input.as_bytes()).unwrap();

        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    }

    #[test]
    fn parse_ignores_bag_attributes() {
        let input = format!(
            "Bag Attributes\n    localKeyID: 01 02\nsubject=/CN=a\n{}Bag Attributes\n{}",
            block("CERTIFICATE"),
            block("CERTIFICATE")
        );

        let blocks = parse(Field::Certificate, input.as_bytes()).unwrap();

        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].position, 2);
    }

    #[test]
    fn parse_accepts_cr_only_line_endings() {
        let input = format!("{}{}", block("CERTIFICATE"), block("CERTIFICATE")).replace('\n', "\r");

        let blocks = parse(Field::Certificate, input.as_bytes()).unwrap();

        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].der, vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    }

    #[test]
    fn parse_counts_lines_of_any_ending() {
        // The block starts on line 3 whether lines end with LF, CRLF or CR.
        for ending in ["\n", "\r\n", "\r"] {
            let input = format!("note{ending}{ending}-----BEGIN CERTIFICATE-----{ending}{BODY}{ending}");

            let error = parse(Field::Certificate, input.as_bytes()).expect_err("the END line is missing");

            assert!(error.to_string().contains("starts on line 3"), "{ending:?}: {error}");
        }
    }

    #[test]
    fn parse_rejects_lossy_utf8_as_not_pem() {
        // The bytes 0x30 0x82 start a DER SEQUENCE, and 0x82 is not valid UTF-8. These bytes
        // contain no control character, so only the replacement characters show that they are binary.
        let der_start = [0x30, 0x82, 0xA1, 0xB2, b'A', b'B', 0xC3, 0x28];
        let lossy = String::from_utf8_lossy(&der_start).into_owned();
        assert!(lossy.contains(char::REPLACEMENT_CHARACTER));

        assert_eq!(code(parse(Field::Certificate, lossy.as_bytes())), "not_pem");
    }

    #[test]
    fn parse_ignores_replacement_character_outside_blocks() {
        let input = format!("friendlyName: M\u{FFFD}ller\n{}", block("CERTIFICATE"));

        let blocks = parse(Field::Certificate, input.as_bytes()).unwrap();

        assert_eq!(blocks.len(), 1);
    }

    #[test]
    fn parse_reads_proc_type_header() {
        let input = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMAMCAQE=\n-----END RSA PRIVATE KEY-----\n";

        let blocks = parse(Field::PrivateKey, input.as_bytes()).unwrap();

        assert_eq!(blocks[0].headers[0], ("Proc-Type".to_string(), "4,ENCRYPTED".to_string()));
        assert_eq!(blocks[0].der.len(), 5);
    }

    #[test]
    fn parse_rejects_each_bad_input() {
        assert_eq!(code(parse(Field::Certificate, b"  \n")), "empty_input");
        assert_eq!(code(parse(Field::Certificate, &[0x30, 0x82, 0x01, 0x0a, 0x02])), "not_pem");
        assert_eq!(code(parse(Field::Certificate, b"LS0tLS1CRUdJTiBDRVJU")), "no_pem_block");
        assert_eq!(code(parse(Field::Certificate, b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n")), "malformed_pem");
        assert_eq!(
            code(parse(Field::Certificate, b"-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n")),
            "malformed_pem"
        );
        assert_eq!(
            code(parse(Field::Certificate, b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END PRIVATE KEY-----\n")),
            "malformed_pem"
        );
    }

    #[test]
    fn encode_round_trips() {
        let der = vec![7u8; 100];

        let text = encode("CERTIFICATE", &der);
        let blocks = parse(Field::Certificate, text.as_bytes()).unwrap();

        assert!(text.ends_with("-----END CERTIFICATE-----\n"));
        assert!(!text.contains('\r'));
        assert_eq!(blocks[0].der, der);
    }
}
