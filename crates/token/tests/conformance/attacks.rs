//! scratch
use super::support::*;
use std::time::{Duration, Instant};
use writ_token::biscuit_auth::{Biscuit, BlockBuilder};
use writ_token::*;

fn append(f: &Fixture, token: &str, code: &str) -> String {
    let b = Biscuit::from_base64(token, f.root_public()).unwrap();
    b.append(BlockBuilder::new().code(code).unwrap())
        .unwrap()
        .to_base64()
        .unwrap()
}

#[test]
fn scratch_hostile() {
    let f = Fixture::new();
    let nums: String = (0..30).map(|i| format!("n({i});")).collect();
    let cases = [
        (
            "facts",
            format!("{nums} big($a,$b,$c) <- n($a), n($b), n($c);"),
        ),
        (
            "join4",
            format!("{nums} x($a) <- n($a), n($b), n($c), n($d), $a + $b + $c + $d < 0;"),
        ),
        (
            "check4",
            format!("{nums} check if n($a), n($b), n($c), n($d), $a + $b + $c + $d < 0;"),
        ),
        (
            "scopes",
            "check if scope($a), scope($b), audience($c), issuer($d), subject($e), $a == \"zz\";"
                .to_string(),
        ),
        (
            "regex0",
            r#"check if "a".matches("(\\w{100}){100}");"#.to_string(),
        ),
        (
            "regex1",
            r#"check if scope($s), $s.matches("[\\w\\d\\p{L}]{300}[\\w\\d]{300}");"#.to_string(),
        ),
        (
            "regexN",
            (0..40)
                .map(|_| r#"check if scope($s), $s.matches("[\\w\\d\\p{L}]{300}[\\w\\d]{300}");"#)
                .collect::<String>(),
        ),
        (
            "regexA",
            (0..10)
                .map(|_| r#"check if scope($s), $s.matches("[a-z]{3000}");"#)
                .collect::<String>(),
        ),
        (
            "regexB",
            (0..10)
                .map(|_| r#"check if scope($s), $s.matches("(?:a?){1500}a{1500}");"#)
                .collect::<String>(),
        ),
        (
            "regexC",
            (0..10)
                .map(|_| r#"check if scope($s), $s.matches("(?:[a-z0-9]|x|y){2500}");"#)
                .collect::<String>(),
        ),
        (
            "ok",
            "check if scope($s), $s == \"inventory.read\";".to_string(),
        ),
    ];
    for (name, code) in cases {
        let t = append(&f, &f.biscuit(), &code);
        let bb = Biscuit::from_base64(&t, f.root_public()).unwrap();
        let src = bb.print_block_source(1).unwrap();
        eprintln!("SRC {}", &src[..src.len().min(200)]);
        eprintln!(
            "PARSE {:?}",
            writ_token::biscuit_auth::parser::parse_block_source(&src)
                .map(|_| ())
                .map_err(|e| format!("{e:?}").chars().take(300).collect::<String>())
        );
        let start = Instant::now();
        let r = f.verifier.verify(&t);
        eprintln!(
            "{name}: {:?} in {:?} (len {})",
            r.map(|_| ()),
            start.elapsed(),
            t.len()
        );
    }
    let _ = Duration::ZERO;
}
