//! The job form's preview: the next fire times as `v1/validate` gives them, within the
//! lifecycle and the app's calendars, and each error under its field.

use std::sync::Arc;

use axum::http::StatusCode;

use super::{Client, Fake};
use crate::api::*;

fn form(pairs: &[(&str, &str)]) -> super::super::form::Fields {
    let text = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    super::super::form::Fields::parse(text.as_bytes()).unwrap()
}

#[test]
fn the_preview_gives_the_times_of_v1_validate_within_the_lifecycle_and_calendars() {
    use super::super::jobs::fires;
    use crate::calendar::Calendar;
    // 2026-07-13T13:00:00Z
    let now = 1_783_947_600_000;
    for (kind, expr, zone) in [
        ("CRON", "0 0 12 * * ?", "Asia/Tokyo"),
        ("FIXED_RATE", "90000", ""),
        (
            "DAILY_TIME_INTERVAL",
            r#"{"interval": 2, "unit": "HOURS", "startTimeOfDay": "09:00", "endTimeOfDay": "17:00"}"#,
            "Europe/Paris",
        ),
    ] {
        let f = form(&[
            ("time_expression_type", kind),
            ("time_expression", expr),
            ("time_zone", zone),
        ]);
        let want = validate_expression(
            &ValidateRequest {
                kind: super::super::form::parse_wire(kind).unwrap(),
                expression: expr.into(),
                time_zone: Some(zone.into()).filter(|z: &String| !z.is_empty()),
                count: Some(5),
                excluded: vec![],
            },
            now,
        )
        .unwrap();
        let got = fires(&f, &[], now).unwrap();
        assert_eq!(got.next, want.next, "{kind} {expr}");
        assert!(got.scheduled && got.skipped.is_empty() && got.lifecycle_end.is_none());
    }
    // Noon in Paris: two calendars skip the 14th (Paris) and the 15th (New York); the
    // lifecycle ends on the 18th.
    let f = form(&[
        ("time_expression_type", "CRON"),
        ("time_expression", "0 0 12 * * ?"),
        ("time_zone", "Europe/Paris"),
        ("lifecycle_end", "2026-07-18T12:00:00+02:00"),
    ]);
    let calendars = [
        Calendar::new("Europe/Paris", &["2026-07-14"]).unwrap(),
        Calendar::new("America/New_York", &["2026-07-15"]).unwrap(),
    ];
    let got = fires(&f, &calendars, now).unwrap();
    assert_eq!(
        got.next,
        [
            "2026-07-16T12:00:00+02:00",
            "2026-07-17T12:00:00+02:00",
            "2026-07-18T12:00:00+02:00"
        ]
    );
    assert_eq!(
        got.skipped,
        ["2026-07-14T12:00:00+02:00", "2026-07-15T12:00:00+02:00"]
    );
    assert_eq!(got.lifecycle_end, Some(1_784_368_800_000));
    // A start in the future moves the first fire there.
    let f = form(&[
        ("time_expression_type", "CRON"),
        ("time_expression", "0 0 12 * * ?"),
        ("lifecycle_start", "2027-01-01T00:00:00Z"),
    ]);
    assert_eq!(fires(&f, &[], now).unwrap().next[0], "2027-01-01T12:00:00Z");
    // API jobs do not fire by themselves.
    let f = form(&[("time_expression_type", "API")]);
    assert!(!fires(&f, &[], now).unwrap().scheduled);
}

#[test]
fn a_preview_error_names_its_field() {
    use super::super::jobs::fires;
    let now = 1_783_947_600_000;
    for (pairs, field) in [
        (
            vec![("time_expression_type", "HOURLY")],
            "time_expression_type",
        ),
        (
            vec![
                ("time_expression_type", "CRON"),
                ("time_expression", "0 * * * * ?x"),
            ],
            "time_expression",
        ),
        (
            vec![
                ("time_expression_type", "CRON"),
                ("time_expression", "0 * * * * ?"),
                ("time_zone", "Mars/Olympus"),
            ],
            "time_zone",
        ),
        (
            vec![
                ("time_expression_type", "CRON"),
                ("time_expression", "0 * * * * ?"),
                ("lifecycle_start", "soon"),
            ],
            "lifecycle_start",
        ),
        (
            vec![
                ("time_expression_type", "CRON"),
                ("time_expression", "0 * * * * ?"),
                ("lifecycle_start", "2027-01-01T00:00:00Z"),
                ("lifecycle_end", "2026-01-01T00:00:00Z"),
            ],
            "lifecycle_end",
        ),
    ] {
        let err = fires(&form(&pairs), &[], now).unwrap_err();
        assert_eq!(err.0, field, "{pairs:?}: {}", err.1);
    }
}

#[tokio::test]
async fn the_preview_reads_the_apps_calendars_and_puts_errors_under_their_field() {
    let fake = Arc::new(Fake::default());
    fake.0.lock().calendars = vec![CalendarView {
        name: "always".into(),
        time_zone: "UTC".into(),
        excluded: vec!["1970-01-01..2299-12-31".into()],
        description: String::new(),
        updated_at: 0,
    }];
    let c = Client::sign_in(fake.clone()).await;
    let post = |pairs: &[(&str, &str)]| {
        let fields: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let c = &c;
        async move { c.post("/jobs/preview", &fields).await }
    };
    // Every trigger falls on an excluded date: none fires, the first skipped are listed.
    let (status, _, page) = post(&[
        ("time_expression_type", "FIXED_RATE"),
        ("time_expression", "60000"),
        ("calendars", "always"),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("No fire time ahead."), "{page}");
    assert!(
        page.contains("Skipped by the calendars on the way"),
        "{page}"
    );
    assert!(page.contains("and 9995 more"), "{page}");
    // Every error slot comes back out of band, empty but the one at fault.
    let slot = |field: &str, text: &str| {
        format!(
            r#"<small class="field-error" id="error-{field}" data-for="{field}"{} hx-swap-oob="true">{text}</small>"#,
            if text.is_empty() {
                ""
            } else {
                r#" role="alert""#
            }
        )
    };
    for field in super::super::pages::PREVIEW_FIELDS {
        assert!(page.contains(&slot(field, "")), "{field}: {page}");
    }
    let (_, _, page) = post(&[
        ("time_expression_type", "CRON"),
        ("time_expression", "0 * * * * ?"),
        ("calendars", "always, <nope>"),
    ])
    .await;
    assert!(
        page.contains(&slot("calendars", "calendar name &quot;&lt;nope&gt;&quot;: 1 to 64 bytes of letters, digits, '_', '-', '.'")),
        "{page}"
    );
    let (_, _, page) = post(&[
        ("time_expression_type", "CRON"),
        ("time_expression", "0 * * * * ?"),
        ("calendars", "always, missing"),
    ])
    .await;
    assert!(
        page.contains(&slot(
            "calendars",
            "this app has no calendar &quot;missing&quot;"
        )),
        "{page}"
    );
    assert!(page.contains(&slot("time_expression", "")), "{page}");
    let (_, _, page) = post(&[
        ("time_expression_type", "CRON"),
        ("time_expression", "0 * * * * ?"),
        ("time_zone", "Mars/Olympus"),
    ])
    .await;
    assert!(
        page.contains(r#"id="error-time_zone" data-for="time_zone" role="alert""#),
        "{page}"
    );
    // The form has each slot under its field, which it describes.
    let (_, page) = c.get("/jobs/new").await;
    for field in [
        "time_expression",
        "time_zone",
        "calendars",
        "lifecycle_start",
        "lifecycle_end",
    ] {
        assert!(
            page.contains(&format!(r#"aria-describedby="error-{field} preview""#)),
            "{field}: {page}"
        );
        assert!(
            page.contains(&format!(r#"id="error-{field}""#)),
            "{field}: {page}"
        );
    }
}
