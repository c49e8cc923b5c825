//! `countersign keys generate`: a key pair that signs and verifies, written safely.

mod common;

use common::countersign;
use countersign_shared::job::{JobSigner, JobVerifier};

#[test]
fn generate_writes_a_working_pair_and_never_overwrites() {
    let dir = std::env::temp_dir().join(format!("countersign-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir_arg = dir.to_str().expect("utf-8 path");
    let out = countersign(
        &["keys", "generate", "--out-dir", dir_arg, "--name", "k"],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let secret = std::fs::read_to_string(dir.join("k.key")).expect("signing key written");
    let public = std::fs::read_to_string(dir.join("k.pub")).expect("public key written");
    let signer = JobSigner::from_text(&secret).expect("signing key parses");
    let verifier = JobVerifier::from_text(&public).expect("public key parses");
    assert_eq!(signer.verifier(), verifier);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("k.key"))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the signing key is readable by its owner only"
        );
    }

    let again = countersign(
        &["keys", "generate", "--out-dir", dir_arg, "--name", "k"],
        None,
    );
    assert_eq!(again.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(dir.join("k.key")).expect("still there"),
        secret
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}
