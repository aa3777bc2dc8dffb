//! Headless Chromium driven over the Chrome DevTools Protocol (a small client on
//! tokio-tungstenite), for the browser tests that need real time and real input: the
//! dashboard's live ticker and toggles, the member mini-app. Every wait is a bounded number of
//! polls, never a wall-clock assertion.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::dashboard::{chromium, HEADLESS};
use crate::helpers::j;

/// A phone's screen, for the mini-app.
pub const PHONE: (u32, u32) = (400, 860);
/// A laptop's, for the dashboard.
pub const DESKTOP: (u32, u32) = (1280, 900);

/// How many times a condition on the page is checked (100 ms apart) before the test fails.
pub const POLLS: usize = 300;

/// A headless Chromium with one page, driven over its DevTools WebSocket.
pub struct Browser {
    child: tokio::process::Child,
    profile: PathBuf,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Chromium on `about:blank`, its window `(width, height)` CSS pixels.
    pub async fn launch(window: (u32, u32)) -> Browser {
        let profile =
            std::env::temp_dir().join(format!("loyalty-chromium-{}", uuid::Uuid::new_v4()));
        let child = tokio::process::Command::new(chromium())
            .args(HEADLESS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--window-size={},{}", window.0, window.1))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium started");
        // Chromium writes the port it picked into the profile.
        let file = profile.join("DevToolsActivePort");
        let mut port = None;
        for _ in 0..POLLS {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Some(p) = text
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u16>().ok())
                {
                    port = Some(p);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let port = port.expect("chromium opened its DevTools port");
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Browser {
            child,
            profile,
            socket,
            next_id: 0,
        }
    }

    /// Chromium with `url` open.
    pub async fn open(url: &str, window: (u32, u32)) -> Browser {
        let mut browser = Browser::launch(window).await;
        browser.call("Page.navigate", j!({ "url": url })).await;
        browser
    }

    /// One DevTools command; events in between are skipped.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = j!({ "id": id, "method": method, "params": params }).to_string();
        self.socket.send(Message::text(message)).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .expect("chromium answered within 60 s")
                .expect("the DevTools socket is open")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                j!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (a bounded number of times; an exception, e.g.
    /// while the page loads, counts as false); returns its value.
    pub async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let guarded = format!(
            "(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
        );
        let mut last = Value::Null;
        for _ in 0..POLLS {
            last = self.eval(&guarded).await;
            let truthy = match &last {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = self
            .eval("document.body ? document.body.innerText.slice(0, 2000) : ''")
            .await;
        panic!("never true: {what} ({expression}); last {last}; page:\n{page}");
    }

    pub async fn text(&mut self, selector: &str) -> String {
        let expression = format!(
            "(document.querySelector({}) || {{}}).textContent || ''",
            j!(selector)
        );
        self.eval(&expression).await.as_str().unwrap().to_owned()
    }

    pub async fn click(&mut self, selector: &str) {
        let expression = format!("document.querySelector({}).click()", j!(selector));
        self.eval(&expression).await;
    }

    /// A real double click (two presses, as the mouse sends them) in the middle of the element.
    pub async fn double_click(&mut self, selector: &str) {
        let expression = format!(
            "(() => {{ const r = document.querySelector({}).getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            j!(selector)
        );
        let at = self.eval(&expression).await;
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for count in [1, 2] {
            for kind in ["mousePressed", "mouseReleased"] {
                self.call(
                    "Input.dispatchMouseEvent",
                    j!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": count }),
                )
                .await;
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
