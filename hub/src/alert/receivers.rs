//! Delivery of one notification to one receiver: e-mail (SMTP, STARTTLS or
//! implicit TLS, auth), Slack (incoming webhook, Block Kit), a generic
//! webhook (the notification as JSON, HMAC-SHA256 signed), PagerDuty
//! (Events API v2, one event per incident: trigger, and resolve with the
//! same `dedup_key`), or the hub's log. Errors come back as text for the
//! outbox's `last_error`; no secret is ever part of one.

use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use sha2::Sha256;

use super::config::{Email, PagerDuty, Receiver};
use super::template::Notification;

/// How long one delivery may take.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// PagerDuty's Events API v2.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Slack refuses longer section texts.
const SLACK_TEXT: usize = 2900;

/// The signature header of the webhook receiver: `sha256=` and the hex
/// HMAC-SHA256 of the body under the receiver's secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends `n` (outbox row `id`) to `r`.
pub async fn deliver(r: &Receiver, n: &Notification, id: i64, http: &reqwest::Client) -> Result<(), String> {
    if r.log.is_some() {
        tracing::warn!(receiver = %r.name, notification = id, status = %n.status, subject = %n.subject, "alert");
        return Ok(());
    }
    if let Some(w) = &r.webhook {
        let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
        let mut req =
            http.post(&w.url).header("content-type", "application/json").header("x-opmas-delivery", id.to_string());
        if !w.secret.is_empty() {
            req = req.header("x-opmas-signature", signature(&w.secret, &body));
        }
        return answer(req.body(body).send().await).await;
    }
    if let Some(s) = &r.slack {
        return answer(http.post(&s.url).json(&slack_body(n)).send().await).await;
    }
    if let Some(p) = &r.pagerduty {
        for event in pagerduty_events(p, n) {
            let url = if p.url.is_empty() { PAGERDUTY_URL } else { p.url.as_str() };
            answer(http.post(url).json(&event).send().await).await?;
        }
        return Ok(());
    }
    if let Some(e) = &r.email {
        return email(e, n, id).await;
    }
    Err(format!("receiver {:?} has nothing to send to", r.name))
}

async fn answer(resp: Result<reqwest::Response, reqwest::Error>) -> Result<(), String> {
    // reqwest's error names the URL, which may hold a secret (Slack's does).
    let resp = resp.map_err(|e| format!("no answer: {}", e.without_url()))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(format!("answered {status}: {}", text.chars().take(200).collect::<String>()))
}

/// Slack's incoming-webhook body: a fallback text and Block Kit sections.
pub fn slack_body(n: &Notification) -> serde_json::Value {
    let mut text = String::new();
    for i in &n.incidents {
        let line = format!(
            "• *{}* {} on `{}`: {} findings from {} (<{}|open>)\n",
            i.state,
            i.rule,
            i.key,
            i.findings,
            i.devices.join(", "),
            i.link
        );
        if text.len() + line.len() > SLACK_TEXT {
            text.push_str("…\n");
            break;
        }
        text.push_str(&line);
    }
    json!({
        "text": n.subject,
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": n.subject.chars().take(150).collect::<String>() } },
            { "type": "section", "text": { "type": "mrkdwn", "text": text } },
            { "type": "context", "elements": [{ "type": "mrkdwn", "text": format!("OPMAS · {} · <{}|incidents>", n.group_key, n.link) }] }
        ]
    })
}

/// One PagerDuty event per incident: `trigger` while it is open,
/// `resolve` once resolved, with `dedup_key` `opmas-incident-<id>`.
pub fn pagerduty_events(p: &PagerDuty, n: &Notification) -> Vec<serde_json::Value> {
    n.incidents
        .iter()
        .map(|i| {
            let severity = match i.severity.as_str() {
                "critical" => "critical",
                "high" => "error",
                "medium" => "warning",
                _ => "info",
            };
            let action = if i.state == "resolved" { "resolve" } else { "trigger" };
            let summary: String = format!("{} {} on {} ({} findings)", i.severity, i.rule, i.key, i.findings).chars().take(1024).collect();
            json!({
                "routing_key": p.routing_key,
                "event_action": action,
                "dedup_key": format!("opmas-incident-{}", i.id),
                "payload": {
                    "summary": summary,
                    "source": if i.devices.is_empty() { "opmas-hub".to_owned() } else { i.devices.join(",") },
                    "severity": severity,
                    "component": i.rule,
                    "custom_details": { "key": i.key, "reason": i.reason, "devices": i.devices, "first": i.first, "last": i.last }
                },
                "links": [{ "href": i.link, "text": "OPMAS incident" }]
            })
        })
        .collect()
}

async fn email(e: &Email, n: &Notification, id: i64) -> Result<(), String> {
    let (host, port) = e.smarthost.rsplit_once(':').ok_or("smarthost is not host:port")?;
    let port: u16 = port.parse().map_err(|_| "smarthost port is not a number")?;
    let from: Mailbox = e.from.parse().map_err(|err| format!("from: {err}"))?;
    let domain = e.from.rsplit_once('@').map_or("opmas", |(_, d)| d.trim_end_matches('>'));
    let mut msg = Message::builder()
        .from(from)
        .subject(&n.subject)
        // The outbox id: a resend after a crash is the same message.
        .message_id(Some(format!("<opmas-alert-{id}@{domain}>")))
        .header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        msg = msg.to(to.parse().map_err(|err| format!("to {to:?}: {err}"))?);
    }
    let msg = msg.body(n.body.clone()).map_err(|err| err.to_string())?;
    let tls = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(host.to_owned());
        if !e.ca_file.is_empty() {
            let pem = std::fs::read(&e.ca_file).map_err(|err| format!("ca_file {}: {err}", e.ca_file))?;
            b = b.add_root_certificate(
                Certificate::from_pem(&pem).map_err(|err| format!("ca_file {}: {err}", e.ca_file))?,
            );
        }
        b.build_rustls().map_err(|err| err.to_string())
    };
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port).timeout(Some(TIMEOUT));
    t = match e.tls.as_str() {
        "none" => t.tls(Tls::None),
        "tls" => t.tls(Tls::Wrapper(tls()?)),
        _ => t.tls(Tls::Required(tls()?)),
    };
    if !e.username.is_empty() {
        t = t.credentials(Credentials::new(e.username.clone(), e.password.clone()));
    }
    t.build().send(msg).await.map(|_| ()).map_err(|err| format!("SMTP {}: {err}", e.smarthost))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
