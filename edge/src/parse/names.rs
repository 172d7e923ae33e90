//! Facility, severity and month names.

/// Facility names by code, as `syslog_loose` names them.
pub(super) const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp",
    "audit", "alert", "clockd", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// Severity names by code, as RFC 5424 and `syslog_loose` name them.
pub(super) const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

/// The canonical name of a facility as `logread` or syslogd print it.
#[inline]
pub(super) fn facility_name(s: &str) -> Option<&'static str> {
    Some(match s {
        "kern" => "kern",
        "user" => "user",
        "mail" => "mail",
        "daemon" => "daemon",
        "auth" | "security" => "auth",
        "syslog" => "syslog",
        "lpr" => "lpr",
        "news" => "news",
        "uucp" => "uucp",
        "cron" => "cron",
        "authpriv" => "authpriv",
        "ftp" => "ftp",
        "ntp" => "ntp",
        "audit" => "audit",
        "local0" => "local0",
        "local1" => "local1",
        "local2" => "local2",
        "local3" => "local3",
        "local4" => "local4",
        "local5" => "local5",
        "local6" => "local6",
        "local7" => "local7",
        _ => return None,
    })
}

/// The canonical name of a severity (`warn` → `warning`, `error` → `err`, `panic` → `emerg`).
#[inline]
pub(super) fn severity_name(s: &str) -> Option<&'static str> {
    Some(match s {
        "emerg" | "panic" => "emerg",
        "alert" => "alert",
        "crit" => "crit",
        "err" | "error" => "err",
        "warn" | "warning" => "warning",
        "notice" => "notice",
        "info" => "info",
        "debug" => "debug",
        _ => return None,
    })
}

#[inline]
pub(super) fn month_number(m: &str) -> Option<u32> {
    month_number_bytes(m.as_bytes())
}

#[inline]
pub(super) fn month_number_bytes(m: &[u8]) -> Option<u32> {
    Some(match m {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}
