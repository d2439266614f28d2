use super::test_server::{HttpsServer, Pki};
use super::*;

#[test]
fn ca_files_that_cannot_be_used_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let e = HttpsRoots::from_ca_file(&missing).unwrap_err();
    assert!(matches!(e, HttpsError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let e = HttpsRoots::from_ca_file(&empty).unwrap_err();
    assert!(matches!(e, HttpsError::Pem { .. }), "{e:?}");
    assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");

    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let e = HttpsRoots::from_ca_pem(garbage.as_bytes()).unwrap_err();
    assert!(matches!(e, HttpsError::Pem { .. }), "{e:?}");
}

#[test]
fn roots_say_what_they_trust() {
    let public = HttpsRoots::public();
    assert!(public.trusts_public());
    assert_eq!(public.extra_cas(), 0);
    let pki = Pki::new(&["localhost"]);
    let private = HttpsRoots::from_ca_pem(pki.ca_pem.as_bytes()).unwrap();
    assert!(!private.trusts_public());
    assert_eq!(private.extra_cas(), 1);
    let both = private.clone().with_public();
    assert!(both.trusts_public());
    assert_eq!(both.extra_cas(), 1);
    assert_ne!(private, both);
    // Building a client needs no process-wide rustls provider.
    both.client().unwrap();
}

async fn get(roots: &HttpsRoots, url: &str) -> Result<(u16, String), reqwest::Error> {
    let response = roots.client().unwrap().get(url).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

#[tokio::test]
async fn a_private_ca_is_trusted_and_failures_say_why() {
    let pki = Pki::new(&["localhost"]);
    let server = HttpsServer::start(&pki, 200, "hello").await;
    let trusted = HttpsRoots::from_ca_pem(pki.ca_pem.as_bytes()).unwrap();

    let (status, body) = get(&trusted, &server.url("localhost", "/x")).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert_eq!(server.requests()[0].line, "GET /x HTTP/1.1");

    // The public roots and the public roots with another CA do not lead to this CA.
    let other = Pki::new(&["localhost"]);
    let others = HttpsRoots::from_ca_pem(other.ca_pem.as_bytes()).unwrap();
    for roots in [HttpsRoots::public(), others.clone(), others.with_public()] {
        let e = get(&roots, &server.url("localhost", "/"))
            .await
            .unwrap_err();
        let tls = tls_failure(&e).unwrap_or_else(|| panic!("no TLS error in {e:?}"));
        // Another CA with the same name: the chain is built, its signature does not verify.
        assert!(
            matches!(
                tls,
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature
                )
            ),
            "{tls:?}"
        );
        let text = describe(&e);
        assert!(
            text.contains("not signed by a CA this client trusts"),
            "{text}"
        );
    }

    // The certificate names localhost, not 127.0.0.1.
    let e = get(&trusted, &server.url("127.0.0.1", "/"))
        .await
        .unwrap_err();
    let tls = tls_failure(&e).unwrap();
    assert_eq!(
        explain(tls),
        "the server's certificate does not name the host in the URL",
        "{tls:?}"
    );
}

#[tokio::test]
async fn a_plain_http_server_behind_an_https_url_is_named() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf).await;
        let _ = conn
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
    });
    let e = get(&HttpsRoots::public(), &format!("https://{addr}/"))
        .await
        .unwrap_err();
    let text = describe(&e);
    assert!(text.contains("did not answer in TLS"), "{text}");
    task.abort();
}
