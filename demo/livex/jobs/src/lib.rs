//! livex's plugin. A mail job scheduled under one version carries its data as live data
//! (type `Live_Mail`) in host memory; whichever version is current when the job fires
//! restores it and runs its own `live_send_mail`.

use hotswap_plugin_api::{
    export_plugin, live_functions, vault, Error, LiveData, Plugin, Result, Value,
};
use livex_api::HostExtObj;
use serde::{Deserialize, Serialize};

const VERSION: &str = if cfg!(feature = "new-shape") {
    "v3"
} else if cfg!(feature = "v2") {
    "v2"
} else {
    "v1"
};

/// The live type. v3 (`new-shape`) adds a required field.
#[cfg(not(feature = "new-shape"))]
#[derive(Serialize, Deserialize)]
#[allow(non_camel_case_types)]
struct Live_Mail {
    to: String,
    body: String,
}

#[cfg(feature = "new-shape")]
#[derive(Serialize, Deserialize)]
#[allow(non_camel_case_types)]
#[serde(deny_unknown_fields)]
struct Live_Mail {
    to: String,
    body: String,
    priority: u8,
}

#[derive(Default)]
struct Jobs;

fn arg<'a>(args: &'a [Value], i: usize, what: &str) -> Result<&'a Value> {
    args.get(i)
        .ok_or_else(|| Error::msg(format!("missing argument {i} ({what})")))
}

// Live functions are registered by name prefix (`live_…`) and by `#[live]`.
#[live_functions]
impl Jobs {
    /// Live function (by its `live_` prefix): runs a mail job on whatever version is
    /// current when it fires.
    fn live_send_mail(&self, args: &[Value]) -> Result<Value> {
        let data = LiveData::from_value(arg(args, 0, "live data")?)?;
        #[cfg(not(feature = "migrate"))]
        let mail: Live_Mail = data.restore("Live_Mail")?;
        #[cfg(feature = "migrate")]
        let mail: Live_Mail = data.restore_or_migrate("Live_Mail", |old| {
            Ok(Live_Mail {
                to: old
                    .get("to")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                body: old
                    .get("body")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                priority: 1,
            })
        })?;
        Ok(Value::from(format!(
            "{VERSION} sent {:?} to {}",
            mail.body, mail.to
        )))
    }

    /// Live function (by attribute): which version answers.
    #[live]
    fn whoami(&self, _args: &[Value]) -> Result<Value> {
        Ok(Value::from(format!("jobs {VERSION}")))
    }
}

impl Plugin for Jobs {
    fn invoke_func(&self, name: &str, args: &[Value]) -> Result<Value> {
        match name {
            "version" => Ok(Value::from(VERSION)),
            // Makes a job's live data; the host keeps it (host-owned) until it fires.
            "make_mail" => {
                let to = arg(args, 0, "to")?.as_str().unwrap_or_default().to_owned();
                let body = arg(args, 1, "body")?
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                #[cfg(not(feature = "new-shape"))]
                let mail = Live_Mail { to, body };
                #[cfg(feature = "new-shape")]
                let mail = Live_Mail {
                    to,
                    body,
                    priority: 0,
                };
                Ok(LiveData::new("Live_Mail", &mail)?.to_value())
            }
            // Schedules through the host's Extension (its job queue).
            "schedule_mail" => {
                let job = self.invoke_func("make_mail", args)?;
                let delay = args.get(2).and_then(Value::as_int).unwrap_or(0).max(0) as u64;
                let payload = encode_job(&job);
                vault()?.with_extension::<HostExtObj, _, _>(|ext| {
                    ext.schedule(delay, "live_send_mail".into(), payload.as_str().into())
                })?;
                Ok(Value::Null)
            }
            "bag_set" => {
                let key = arg(args, 0, "key")?.as_str().unwrap_or_default();
                vault()?.set(key, arg(args, 1, "value")?.clone())?;
                Ok(Value::Null)
            }
            "bag_get" => Ok(vault()?
                .get(arg(args, 0, "key")?.as_str().unwrap_or_default())
                .unwrap_or_default()),
            "ext_tag" => Ok(Value::from(
                vault()?.with_extension::<HostExtObj, _, _>(|e| e.generation_tag() as i64)?,
            )),
            "ext_greet" => {
                let who = arg(args, 0, "who")?.as_str().unwrap_or("world").to_owned();
                let text = vault()?.with_extension::<HostExtObj, _, _>(|e| {
                    e.greet(who.as_str().into()).into_string()
                })?;
                Ok(Value::from(format!("{VERSION}: {text}")))
            }
            "call_live" => {
                let name = arg(args, 0, "name")?
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                vault()?.call_live(&name, &args[1..])
            }
            _ => Err(Error::unknown_function(name)),
        }
    }
}

/// Live data crosses the Extension as text, `<type>:<hex of the serialized bytes>`:
/// the host decodes it back into `LiveData` and keeps it until the job fires.
fn encode_job(v: &Value) -> String {
    let bytes = match v.get("data") {
        Some(Value::Bytes(b)) => b.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        _ => String::new(),
    };
    let ty = v
        .get("live_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{ty}:{bytes}")
}

export_plugin!(Jobs, live impl, live_types { Live_Mail });
