//! Admission quotas (`quota.lua`): per subject, two sorted sets under the subject's hash tag,
//! `<prefix>:quota:{<subject>}:live` and `…:recent`, trimmed, checked and written in one script
//! on the server's own clock, so every instance counts against the same numbers and instance
//! clock skew does not move the windows. Each set expires with its newest entry.

use std::time::Duration;

use redis::Value;
use shoal_core::{
    Error, Result,
    quota::{QuotaBound, QuotaReply, QuotaRequest},
};

use super::{exec::int_of, handle::StoreState};

impl StoreState {
    pub(super) async fn quota(&self, request: QuotaRequest<'_>) -> Result<QuotaReply> {
        request.validate()?;
        let [live, recent] = self.keys.quota(request.subject());
        let mut call = self.scripts.quota.prepare_invoke();
        call.key(live).key(recent);
        match request {
            QuotaRequest::Admit { member, rule, .. } => {
                call.arg("admit")
                    .arg(member)
                    .arg(rule.max_live)
                    .arg(millis(rule.live_ttl))
                    .arg(rule.max_per_window)
                    .arg(millis(rule.window));
            }
            QuotaRequest::Release { member, .. } => {
                call.arg("release").arg(member);
            }
            QuotaRequest::Cancel { member, .. } => {
                call.arg("cancel").arg(member);
            }
        }
        let mut c = self.conn();
        let reply: Value = self.io("quota", None, call.invoke_async(&mut c)).await?;
        let Value::Array(parts) = reply else {
            return Err(bad_reply());
        };
        match (
            parts.first().and_then(int_of),
            parts.get(1).and_then(int_of),
            parts.get(2).and_then(int_of),
        ) {
            (Some(1), None, None) => Ok(QuotaReply::Done),
            (Some(0), None, None) => Ok(QuotaReply::Absent),
            (Some(2), Some(bound), Some(after)) => Ok(QuotaReply::Refused {
                bound: if bound == 1 {
                    QuotaBound::Live
                } else {
                    QuotaBound::Window
                },
                retry_after: Duration::from_millis(u64::try_from(after).unwrap_or(1).max(1)),
            }),
            _ => Err(bad_reply()),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn bad_reply() -> Error {
    Error::backend("unexpected reply from the quota script")
}
