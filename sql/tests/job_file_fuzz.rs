//! Many random job files — valid ones mutated byte by byte and token by token, and shapes
//! built to hurt (deep nesting, huge numbers, long strings) — through the job-file parser:
//! each is accepted or refused with an error; none panics or overflows the stack. The inputs
//! come from a fixed seed, so a failure repeats; its input is printed.

use ferry_sql::JobFile;
use ferry_testkit::cli::Dice;

const VALID: &str = r#"name = "shop_sync"
[source]
url = "postgres://user:secret@127.0.0.1:5432/shop"
[source.options]
server_id = 1073741999
resume_mode = "auto"
[sink]
url = "mysql://user@127.0.0.1:3306"
existing_rows = "truncate"
[migration]
types = ["schema", "full", "incremental"]
batch_size = 8192
parallelism = 4
chunk_rows = 250000
max_rows_per_second = 0
bandwidth_limit_mb = 0
[[rules]]
sql = "INSERT INTO sales.big_orders SELECT id, name AS full_name FROM shop.orders WHERE amount > 100"
[[rules]]
sql = 'SELECT * FROM shop.*'
"#;

/// Pieces a mutation splices in: TOML syntax, keys, values at and past every limit.
const PIECES: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "\n",
    ",",
    ".",
    "#",
    "\\",
    "\\u0000",
    "\\uD800",
    "-1",
    "0",
    "1e309",
    "nan",
    "inf",
    "-inf",
    "18446744073709551616",
    "9223372036854775807",
    "4294967296",
    "1048577",
    "65",
    "true",
    "1979-05-27T07:32:00Z",
    "name",
    "source",
    "sink",
    "migration",
    "rules",
    "sql",
    "url",
    "types",
    "batch_size",
    "parallelism",
    "chunk_rows",
    "server_id",
    "existing_rows",
    "resume_mode",
    "redis://127.0.0.1:1",
    "parquet:///tmp/x",
    "\u{feff}",
    "é",
    "\u{10ffff}",
    " ",
    "\t",
];

fn mutate(dice: &mut Dice, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + dice.index(6) {
        let at = dice.index(bytes.len() + 1);
        match dice.index(5) {
            0 if !bytes.is_empty() => {
                let end = (at + dice.index(12)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            1 => {
                let piece = *dice.pick(PIECES);
                bytes.splice(at..at, piece.bytes());
            }
            2 if !bytes.is_empty() => {
                let at = at.min(bytes.len() - 1);
                bytes[at] = dice.index(256) as u8;
            }
            3 if !bytes.is_empty() => {
                let start = dice.index(bytes.len());
                let end = (start + dice.index(40)).min(bytes.len());
                let copy: Vec<u8> = bytes[start..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => {
                let piece = *dice.pick(PIECES);
                let key_line = format!("\n{piece} = {}\n", *dice.pick(PIECES));
                bytes.splice(at..at, key_line.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn parse(text: &str) {
    let outcome = std::panic::catch_unwind(|| {
        if let Ok(job) = JobFile::parse(text) {
            let _ = job.job_name("some-file");
        }
    });
    assert!(outcome.is_ok(), "the job-file parser panicked on:\n{text}");
}

#[test]
fn mutated_job_files_are_accepted_or_refused_never_a_crash() {
    let mut dice = Dice(0x5eed_f0e1);
    parse(VALID);
    assert!(JobFile::parse(VALID).is_ok());
    let mut refused = 0;
    let rounds = 100_000;
    for _ in 0..rounds {
        let text = mutate(&mut dice, VALID);
        parse(&text);
        refused += usize::from(JobFile::parse(&text).is_err());
    }
    // Most mutations break the file; what still parses was checked by the same code.
    assert!(refused > rounds / 4, "only {refused} of {rounds} refused");
    println!("job-file fuzz: {rounds} mutated files, {refused} refused, none crashed");
}

#[test]
fn shapes_built_to_hurt_are_refused_with_an_error() {
    let hostile = [
        format!("a = {}1{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("a = {}", "{ b = ".repeat(50_000)),
        format!("{}\n", "[a.".repeat(20_000)),
        format!("{VALID}\n[[rules]]\nsql = \"{}\"\n", "x".repeat(2_000_000)),
        VALID.replace(
            "batch_size = 8192",
            "batch_size = 99999999999999999999999999",
        ),
        VALID.replace(
            "name = \"shop_sync\"",
            &format!("name = \"{}\"", "a".repeat(10_000)),
        ),
        "\u{0}".repeat(1000),
        String::new(),
    ];
    for text in &hostile {
        parse(text);
    }
}
