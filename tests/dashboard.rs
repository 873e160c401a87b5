//! The web dashboard in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver). A person signs in with a token, watches a commit's
//! release go from Updating to Running without reloading, opens the revision's diff,
//! and rolls the environment back through the confirmation dialog; a phone-sized
//! window shows the page without sideways scrolling. Screenshots are kept under
//! `target/screenshots/` (CI keeps them as artifacts); `DROVER_BLESS=1` also writes the
//! overview to docs/dashboard.png, the picture README.md shows.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::platform::{Platform, fixture};
use crate::support::{blessing, free_port, repo_root};

/// chromedriver with a headless Chromium session; both stop when dropped.
struct Browser {
    driver: Child,
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian's chromium-driver; .ci/install-deps installs it)");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        // The flags keep Chromium off the network this machine does not have (it
        // would otherwise try Google's services at every start).
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = runtime.block_on(async {
            loop {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(capabilities.clone())
                    .connect(&url)
                    .await
                {
                    Ok(client) => break client,
                    Err(e) if Instant::now() > deadline => panic!("no browser session: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Browser {
            driver,
            client: Some(client),
            runtime,
            _profile: profile,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn goto(&self, url: &str) {
        self.runtime.block_on(self.client().goto(url)).unwrap();
    }

    /// Runs `script` (a function body) in the page; its return value.
    fn js(&self, script: &str) -> Value {
        self.runtime
            .block_on(self.client().execute(script, vec![]))
            .unwrap()
    }

    /// The text of the element `css` selects ("" while there is none).
    fn text(&self, css: &str) -> String {
        self.js(&format!(
            "const e = document.querySelector({}); return e ? e.innerText : '';",
            json!(css)
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The element `css` selects, once there is one.
    fn element(&self, css: &str) -> Element {
        self.runtime
            .block_on(self.client().wait().for_element(Locator::Css(css)))
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    fn click(&self, css: &str) {
        self.runtime
            .block_on(self.element(css).click())
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    fn type_into(&self, css: &str, text: &str) {
        self.runtime
            .block_on(self.element(css).send_keys(text))
            .unwrap();
    }

    /// Waits until the text of `css` satisfies `test`; that text.
    fn wait_text(&self, css: &str, what: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.text(css);
            if test(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "not within 60s: {what}; {css} says:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a screenshot as target/screenshots/NAME.png after checking that it is a
    /// picture of the page's size; its path.
    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.runtime.block_on(self.client().screenshot()).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let inner = self.js("return window.innerWidth;").as_u64().unwrap() as u32;
        assert!(
            width >= inner,
            "the screenshot ({width}px) shows the window ({inner}px)"
        );
        assert!(png.len() > 10_000, "a screenshot with something on it");
        let dir = repo_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_dashboard_follows_a_release_shows_its_diff_and_rolls_back() {
    let platform = Platform::start_from(&fixture(), false, &[], &[]);
    platform.wait_for(Duration::from_secs(60), "web ready", |s| {
        Platform::ready(s, "web", 1)
    });
    let token = platform.drover(&[
        "token",
        "create",
        "operator-on-call",
        "--scope",
        "read",
        "--scope",
        "rollback:staging",
    ]);
    let browser = Browser::start();
    browser.goto(&format!("http://{}/", platform.api));

    // Every field has a label; signing in is done from the keyboard (Enter submits).
    assert_eq!(
        browser.js("return [...document.querySelectorAll('input, select')].every(i => i.labels.length > 0);"),
        json!(true)
    );
    browser.type_into("#token", "not-a-token\n");
    browser.wait_text("#login-error", "a wrong token is refused", |t| {
        t.contains("unknown or revoked")
    });
    browser.js("document.getElementById('token').value = '';");
    browser.type_into("#token", &format!("{}\n", token.trim()));
    browser.wait_text("#who", "signed in", |t| {
        t.contains("operator-on-call") && t.contains("rollback:staging")
    });
    browser.wait_text("#environments", "staging synced and running", |t| {
        t.contains("staging") && t.contains("Synced") && t.contains("Running")
    });
    browser.wait_text("#services", "web running", |t| {
        t.contains("web") && t.contains("Running") && t.contains("1/1")
    });
    // A read token with no scale scope gets no Scale button.
    assert_eq!(browser.text("#services button"), "");
    let overview = browser.screenshot("overview");
    if blessing() {
        std::fs::copy(&overview, repo_root().join("docs/dashboard.png")).unwrap();
    }

    // A commit: the open page sees the release go from Updating to Running by itself.
    browser.js("window.loadedOnce = true;");
    platform.commit_web_v2(
        1,
        "  env: {EXAMPLE_READY_AFTER: \"3\"}\n  update: {monitor: 1s}\n",
        "web v2, ready after 3 seconds",
    );
    browser.wait_text("#environments", "staging updating", |t| {
        t.contains("Updating")
    });
    browser.screenshot("updating");
    browser.wait_text("#environments", "staging running", |t| {
        t.contains("Running") && !t.contains("Updating")
    });
    browser.wait_text("#services", "web v2 running", |t| {
        t.contains("v2") && t.contains("Running")
    });
    assert_eq!(
        browser.js("return window.loadedOnce === true;"),
        json!(true),
        "no reload"
    );

    // The history and the diff of the newest release.
    browser.click("nav button[data-view=history]");
    browser.wait_text("#releases", "two releases", |t| {
        t.contains("web v2, ready after 3 seconds") && t.contains("healthy")
    });
    browser.click("#releases tbody tr:first-child button");
    let diff = browser.wait_text("#diff", "the diff", |t| t.contains("changed: Service"));
    assert!(
        diff.contains("version: v1") && diff.contains("version: v2"),
        "{diff}"
    );
    browser.screenshot("diff");

    // A rollback, asked for and confirmed.
    browser.click("#rollback");
    assert_eq!(
        browser.js("return document.getElementById('confirm').open;"),
        json!(true)
    );
    browser.screenshot("rollback-confirm");
    browser.click("#confirm-ok");
    browser.wait_text("#toast", "the rollback is under way", |t| {
        t.contains("rolling staging back")
    });
    browser.wait_text("#releases", "the rollback's release", |t| {
        t.contains("manual")
    });
    browser.screenshot("rolled-back");

    // On a phone: nothing wider than the screen.
    browser
        .runtime
        .block_on(browser.client().set_window_size(390, 844))
        .unwrap();
    browser.click("nav button[data-view=overview]");
    // Wide tables scroll inside their own box; nothing else is wider than the screen.
    let wider = browser.js(
        "return [...document.querySelectorAll('body *')]
           .filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > window.innerWidth + 1)
           .map(e => e.tagName + '#' + e.id + '.' + e.className);",
    );
    assert_eq!(wider, json!([]), "no sideways scrolling on a phone");
    assert_eq!(
        browser.js("return document.documentElement.scrollWidth <= window.innerWidth;"),
        json!(true),
        "the page itself is as wide as the phone"
    );
    browser.screenshot("phone");
}
