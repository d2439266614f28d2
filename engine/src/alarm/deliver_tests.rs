//! Signatures against the vendors' documented computations, endpoints, and each transport
//! against a local fake (an SMTP server and an HTTP endpoint on 127.0.0.1 in the test).

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::alarm::AlarmKind;
use crate::ids::{InstanceId, JobId};

fn notice() -> Notice<'static> {
    Notice {
        id: "job-7-failures-42",
        app: "shop",
        job_id: JobId(7),
        instance_id: Some(InstanceId(42)),
        kind: AlarmKind::Failures,
        raised_at: 1_893_456_000_000,
        message: "job 7 failed",
    }
}

const TEXT: &str = "[ferrojob] shop: job 7 failed (alarm job-7-failures-42)";

#[test]
fn the_generic_signature_is_hmac_sha256_in_hex() {
    // RFC 4231 test case 2.
    assert_eq!(
        signature_header(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn dingtalk_signs_as_its_documented_sample() {
    // DingTalk's sample (Python: `hmac.new(secret, f"{timestamp}\n{secret}", sha256)`,
    // base64, then `quote_plus`) with its secret "this is secret" and a fixed timestamp in
    // place of the sample's `time.time()`. DingTalk publishes no fixed output; the expected
    // values were computed with the sample itself (Python 3 hmac, hashlib, base64, urllib).
    let sign = dingtalk_sign("this is secret", 1_577_262_236_757);
    assert_eq!(sign, "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM=");
    assert_eq!(
        form_urlencode(&sign),
        "hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
    );
}

#[test]
fn feishu_signs_as_its_documented_sample() {
    // Feishu's sample (Python: `hmac.new(f"{timestamp}\n{secret}", digestmod=sha256)`, an
    // empty message, base64) with the documented body's timestamp 1599360473 and the secret
    // "demo"; computed with the sample itself, as Feishu publishes no fixed output.
    assert_eq!(
        feishu_sign("demo", 1_599_360_473),
        "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="
    );
}

fn target<'a>(kind: ChannelKind, url: &'a str, secret: Option<&'a str>) -> Target<'a> {
    Target { kind, url, secret }
}

#[test]
fn each_webhook_kind_gets_its_request() {
    let now = 1_599_360_473_123;
    let n = notice();
    // DingTalk signed: the signature in the URL, the body unchanged.
    let r = webhook_request(
        target(
            ChannelKind::DingTalk,
            "http://robot/send?access_token=T",
            Some("this is secret"),
        ),
        &n,
        now,
    )
    .unwrap();
    let sign = form_urlencode(&dingtalk_sign("this is secret", now));
    assert_eq!(
        r.url,
        format!("http://robot/send?access_token=T&timestamp={now}&sign={sign}")
    );
    assert_eq!(r.body, request_body(ChannelKind::DingTalk, &n));
    assert_eq!(r.headers, vec![(ALARM_ID_HEADER, n.id.to_owned())]);
    // Feishu signed: timestamp (seconds) and sign first in the body, as the document shows.
    let r = webhook_request(
        target(ChannelKind::Feishu, "http://bot/hook/x", Some("demo")),
        &n,
        now,
    )
    .unwrap();
    assert_eq!(r.url, "http://bot/hook/x");
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        format!(
            r#"{{"timestamp":"1599360473","sign":"l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8=","msg_type":"text","content":{{"text":"{TEXT}"}}}}"#
        )
    );
    // Unsigned vendor kinds and signed generic ones keep the plain body.
    let r = webhook_request(target(ChannelKind::DingTalk, "http://r", None), &n, now).unwrap();
    assert_eq!(r.url, "http://r");
    let r = webhook_request(target(ChannelKind::Webhook, "http://w", Some("k")), &n, now).unwrap();
    let body = request_body(ChannelKind::Webhook, &n);
    assert_eq!(
        r.headers,
        vec![
            (ALARM_ID_HEADER, n.id.to_owned()),
            (SIGNATURE_HEADER, signature_header(b"k", &body)),
        ]
    );
    assert!(webhook_request(target(ChannelKind::Email, "smtp://x", None), &n, now).is_none());
}

#[test]
fn endpoints_are_checked_per_kind() {
    let ok = |kind, url: &str| validate_endpoint(kind, url).is_ok();
    assert!(ok(ChannelKind::Webhook, "http://h/x"));
    assert!(ok(ChannelKind::Webhook, "https://h/x"));
    assert!(ok(
        ChannelKind::DingTalk,
        "https://oapi.dingtalk.com/robot/send?access_token=T"
    ));
    assert!(!ok(ChannelKind::Webhook, "ftp://h/x"));
    assert!(!ok(ChannelKind::Webhook, "smtp://h?from=a@b.c&to=d@e.f"));
    assert!(ok(ChannelKind::Email, "smtp://h?from=a@b.c&to=d@e.f"));
    assert!(!ok(ChannelKind::Email, "http://h/x"));
}

#[test]
fn email_endpoints_parse_with_their_defaults() {
    let e = EmailEndpoint::parse(
        "smtp://alarms%40shop@mail.example.com?from=ferrojob%20%3Cf@shop.example%3E&to=a@shop.example,b@shop.example",
    )
    .unwrap();
    assert_eq!(e.host, "mail.example.com");
    assert_eq!((e.port, e.security), (587, SmtpSecurity::StartTls));
    assert_eq!(e.user.as_deref(), Some("alarms@shop"));
    assert_eq!(e.from.to_string(), "ferrojob <f@shop.example>");
    assert_eq!(e.to.len(), 2);
    let e = EmailEndpoint::parse("smtps://m:2465?from=f@x.y&to=t@x.y").unwrap();
    assert_eq!(
        (e.port, e.security, e.user),
        (2465, SmtpSecurity::Tls, None)
    );
    let e = EmailEndpoint::parse("smtp://127.0.0.1?from=f@x.y&to=t@x.y&tls=none").unwrap();
    assert_eq!((e.port, e.security), (25, SmtpSecurity::None));
    let e = EmailEndpoint::parse("smtp://[::1]:2525?from=f@x.y&to=t@x.y").unwrap();
    assert_eq!((e.host.as_str(), e.port), ("::1", 2525));
    for (url, needle) in [
        (
            "smtp://u:pw@m?from=f@x.y&to=t@x.y",
            "no password in the URL",
        ),
        ("smtp://m?to=t@x.y", "no from="),
        ("smtp://m?from=f@x.y", "to= must name"),
        (
            "smtp://m?from=f@x.y&to=not-an-address",
            "to \"not-an-address\"",
        ),
        ("smtp://m?from=f@x.y&to=t@x.y&cc=c@x.y", "unknown parameter"),
        ("smtps://m?from=f@x.y&to=t@x.y&tls=none", "tls=none"),
        ("imap://m?from=f@x.y&to=t@x.y", "scheme"),
        ("not a url", "email endpoint"),
    ] {
        let e = EmailEndpoint::parse(url).unwrap_err().to_string();
        assert!(e.contains(needle), "{url}: {e}");
    }
    let many: Vec<String> = (0..=MAX_EMAIL_RECIPIENTS)
        .map(|i| format!("t{i}@x.y"))
        .collect();
    let url = format!("smtp://m?from=f@x.y&to={}", many.join(","));
    assert!(EmailEndpoint::parse(&url).is_err());
}

/// A fake SMTP server for one session: answers enough of RFC 5321 (EHLO with AUTH, AUTH,
/// MAIL, RCPT, DATA, QUIT) and returns every line the client sent.
async fn fake_smtp(listener: TcpListener) -> Vec<String> {
    let (socket, _) = listener.accept().await.unwrap();
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 fake ESMTP ready\r\n").await.unwrap();
    let mut lines = Vec::new();
    let mut in_data = false;
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.unwrap() == 0 {
            break;
        }
        lines.push(line.clone());
        if in_data {
            if line == ".\r\n" {
                in_data = false;
                write.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
            }
            continue;
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-fake\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
            "AUTH" => b"235 2.7.0 authenticated\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.1.0 ok\r\n",
            "DATA" => {
                in_data = true;
                b"354 end with <CRLF>.<CRLF>\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await.unwrap();
                break;
            }
            _ => b"500 5.5.1 unknown\r\n",
        };
        write.write_all(answer).await.unwrap();
    }
    lines
}

#[tokio::test]
async fn an_email_alarm_reaches_a_local_smtp_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(fake_smtp(listener));
    let url = format!(
        "smtp://alarms@127.0.0.1:{port}?from=ferrojob@shop.example&to=oncall@shop.example,ops@shop.example&tls=none"
    );
    let http = crate::https::HttpsRoots::public().client().unwrap();
    let sent = send(
        &http,
        target(ChannelKind::Email, &url, Some("pw")),
        &notice(),
        0,
    )
    .await;
    assert_eq!(sent, Ok("SMTP 250".to_owned()));
    let lines = server.await.unwrap();
    let all = lines.concat();
    // The login, the envelope, then the message.
    let plain = base64::engine::general_purpose::STANDARD.encode(b"\0alarms\0pw");
    assert!(all.contains(&format!("AUTH PLAIN {plain}\r\n")), "{all}");
    assert!(all.contains("MAIL FROM:<ferrojob@shop.example>"), "{all}");
    assert!(all.contains("RCPT TO:<oncall@shop.example>"), "{all}");
    assert!(all.contains("RCPT TO:<ops@shop.example>"), "{all}");
    for header in [
        "Subject: [ferrojob] shop: FAILURES alarm for job 7\r\n",
        "Message-ID: <job-7-failures-42@ferrojob>\r\n",
        "X-Ferrojob-Alarm-Id: job-7-failures-42\r\n",
        "From: ferrojob@shop.example\r\n",
        "To: oncall@shop.example, ops@shop.example\r\n",
    ] {
        assert!(all.contains(header), "no {header:?} in {all}");
    }
    assert!(all.contains("job 7 failed\r\n"), "{all}");
    assert!(all.contains("instance: 42\r\n"), "{all}");
}

#[tokio::test]
async fn an_smtp_server_that_refuses_is_a_failed_attempt() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket
            .write_all(b"554 5.3.2 no service here\r\n")
            .await
            .unwrap();
    });
    let url = format!("smtp://127.0.0.1:{port}?from=f@x.y&to=t@x.y&tls=none");
    let sent = send(
        &crate::https::HttpsRoots::public().client().unwrap(),
        target(ChannelKind::Email, &url, None),
        &notice(),
        0,
    )
    .await;
    let detail = sent.unwrap_err();
    assert!(detail.starts_with("SMTP: "), "{detail}");
    server.await.unwrap();
}

#[tokio::test]
async fn a_starttls_endpoint_refuses_a_server_without_starttls() {
    // The fake offers no STARTTLS: `smtp://` (required STARTTLS) must not fall back to clear.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(fake_smtp(listener));
    let url = format!("smtp://127.0.0.1:{port}?from=f@x.y&to=t@x.y");
    let sent = send(
        &crate::https::HttpsRoots::public().client().unwrap(),
        target(ChannelKind::Email, &url, None),
        &notice(),
        0,
    )
    .await;
    assert!(sent.is_err(), "{sent:?}");
    let lines = server.await.unwrap();
    assert!(
        !lines.iter().any(|l| l.starts_with("MAIL")),
        "mail sent in clear: {lines:?}"
    );
}

/// A one-request HTTP endpoint: answers 200 and returns the request line and the body.
async fn fake_http(listener: TcpListener) -> (String, String) {
    let (socket, _) = listener.accept().await.unwrap();
    let mut read = BufReader::new(socket);
    let mut request_line = String::new();
    read.read_line(&mut request_line).await.unwrap();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        read.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    read.read_exact(&mut body).await.unwrap();
    read.get_mut()
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    (request_line, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn a_signed_dingtalk_alarm_carries_the_signature_in_its_url() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(fake_http(listener));
    let url = format!("http://{addr}/robot/send?access_token=T");
    let now = 1_577_262_236_757;
    let sent = send(
        &crate::https::HttpsRoots::public().client().unwrap(),
        target(ChannelKind::DingTalk, &url, Some("this is secret")),
        &notice(),
        now,
    )
    .await;
    assert_eq!(sent, Ok("200".to_owned()));
    let (line, body) = server.await.unwrap();
    assert_eq!(
        line,
        "POST /robot/send?access_token=T&timestamp=1577262236757&sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D HTTP/1.1\r\n"
    );
    assert_eq!(
        body,
        format!(r#"{{"msgtype":"text","text":{{"content":"{TEXT}"}}}}"#)
    );
}
