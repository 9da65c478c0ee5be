//! A real headless Chromium (Debian's `chromium`), driven over the DevTools
//! protocol on a pipe (`--remote-debugging-pipe`: JSON messages ended by a
//! NUL byte, commands on fd 3, replies and events on fd 4), as Puppeteer
//! does; no WebDriver and no crate. Used by the dashboard tests: open a
//! page, read it, click, download, take screenshots.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::missing_precondition;

/// How long one protocol command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where screenshots go: `target/dashboard-screenshots/` (CI keeps them).
pub(crate) fn screenshot_dir() -> PathBuf {
    let dir = crate::support::repo_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/dashboard-screenshots");
    dir
}

/// The browser binary, `None` (after [`missing_precondition`]) when absent.
fn chromium() -> Option<PathBuf> {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    missing_precondition("chromium is not installed (apt-get install chromium)");
    None
}

type Pending = Arc<Mutex<HashMap<u64, Sender<Value>>>>;

/// A headless Chromium; killed on drop.
pub(crate) struct Browser {
    child: Child,
    to_browser: Mutex<std::io::PipeWriter>,
    pending: Pending,
    next_id: Mutex<u64>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium (`None` when it is not installed and not under CI).
    pub(crate) fn start() -> Option<Browser> {
        let bin = chromium()?;
        let profile = tempfile::tempdir().expect("a profile directory");
        let (commands_read, commands_write) = std::io::pipe().expect("a pipe");
        let (replies_read, replies_write) = std::io::pipe().expect("a pipe");
        let (cmd_fd, reply_fd): (OwnedFd, OwnedFd) = (commands_read.into(), replies_write.into());
        let (cmd_raw, reply_raw) = (cmd_fd.as_raw_fd(), reply_fd.as_raw_fd());
        let mut command = Command::new(bin);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork
        // and exec. Both ends are first copied above 10, so that neither is
        // overwritten (or left close-on-exec) when it already is 3 or 4.
        unsafe {
            command.pre_exec(move || {
                let high_cmd = libc::fcntl(cmd_raw, libc::F_DUPFD, 10);
                let high_reply = libc::fcntl(reply_raw, libc::F_DUPFD, 10);
                if high_cmd < 0
                    || high_reply < 0
                    || libc::dup2(high_cmd, 3) < 0
                    || libc::dup2(high_reply, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop((cmd_fd, reply_fd));
        let pending: Pending = Arc::default();
        let routes = pending.clone();
        thread::spawn(move || {
            let mut from_browser = BufReader::new(replies_read);
            let mut buf = Vec::new();
            while from_browser.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop_if(|b| *b == 0);
                if let Ok(msg) = serde_json::from_slice::<Value>(&buf)
                    && let Some(id) = msg["id"].as_u64()
                    && let Some(tx) = routes.lock().unwrap().remove(&id)
                {
                    let _ = tx.send(msg);
                }
                buf.clear();
            }
        });
        Some(Browser {
            child,
            to_browser: Mutex::new(commands_write),
            pending,
            next_id: Mutex::new(0),
            _profile: profile,
        })
    }

    /// Sends one command (to `session`, or the browser) and waits for its reply.
    fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            *n
        };
        let (tx, rx): (Sender<Value>, Receiver<Value>) = channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to_browser
            .lock()
            .unwrap()
            .write_all(&bytes)
            .expect("write to chromium");
        let reply = rx.recv_timeout(COMMAND_TIMEOUT).unwrap_or_else(|_| {
            panic!("chromium did not answer {method} within {COMMAND_TIMEOUT:?}")
        });
        assert!(
            reply.get("error").is_none(),
            "chromium refused {method}: {}",
            reply["error"]
        );
        reply["result"].clone()
    }

    /// Saves what the browser downloads (a link with `Content-Disposition:
    /// attachment`) into `dir`, under the name the server suggests.
    pub(crate) fn download_into(&self, dir: &Path) {
        self.call(
            None,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": dir.display().to_string()}),
        );
    }

    /// A new tab showing `url`, loaded (tabs share the browser's cookies).
    pub(crate) fn open(&self, url: &str) -> Tab<'_> {
        let target = self.call(None, "Target.createTarget", json!({"url": url}));
        let target_id = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        let tab = Tab {
            browser: self,
            session: attached["sessionId"]
                .as_str()
                .expect("a session")
                .to_string(),
            target_id,
        };
        tab.wait_for(
            &format!("{url} loaded"),
            Duration::from_secs(30),
            "document.readyState === 'complete' && location.href !== 'about:blank'",
        );
        tab
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab of a [`Browser`]; closed on drop.
pub(crate) struct Tab<'b> {
    browser: &'b Browser,
    session: String,
    target_id: String,
}

impl Drop for Tab<'_> {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.browser.call(
                None,
                "Target.closeTarget",
                json!({"targetId": self.target_id}),
            );
        }
    }
}

impl Tab<'_> {
    fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params)
    }

    /// Evaluates `expression` in the page; its value.
    pub(crate) fn eval(&self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expression} threw: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// The page's visible text.
    pub(crate) fn text(&self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's whole HTML, as it is now.
    pub(crate) fn html(&self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Polls `expression` until it is true; panics with the page's text.
    #[track_caller]
    pub(crate) fn wait_for(&self, what: &str, timeout: Duration, expression: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            // A page half replaced by a navigation may not have the
            // elements yet: an exception is "not yet".
            let check = format!(
                "(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"
            );
            if self.eval(&check) == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; the page says:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the element `selector` names, as a user would (a real mouse
    /// press and release at its centre), then waits for `then`.
    #[track_caller]
    pub(crate) fn click(&self, selector: &str) {
        let js_selector = serde_json::to_string(selector).unwrap();
        let rect = self.eval(&format!(
            "(() => {{ const e = document.querySelector({js_selector}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = match rect.as_array().map(Vec::as_slice) {
            Some([x, y]) => (x.as_f64().unwrap(), y.as_f64().unwrap()),
            _ => panic!("no element {selector} on the page:\n{}", self.text()),
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Types `text` into the input `selector` names (focus, then real key input).
    pub(crate) fn type_into(&self, selector: &str, text: &str) {
        let js_selector = serde_json::to_string(selector).unwrap();
        self.eval(&format!("document.querySelector({js_selector}).focus()"));
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Sets the viewport to `width` × `height` CSS pixels (a phone: 390 × 844).
    pub(crate) fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Saves a PNG of the whole page as `target/dashboard-screenshots/<name>.png`.
    pub(crate) fn screenshot(&self, name: &str) -> PathBuf {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}
