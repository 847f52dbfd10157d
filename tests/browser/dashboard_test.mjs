// The dashboard page in Debian's headless Chromium, driven by playwright-core (no browser
// download). Started by tests/browser/browser_test.cpp, which serves the page and acts on this
// script's requests: "REQ burst" (2 s of load) and "REQ stop" (stop PostgreSQL), each answered
// with a line on stdin. Prints "RESULT ok" or "RESULT fail: …" last.
//
//   node dashboard_test.mjs URL SCREENSHOT.png

import { chromium } from "playwright-core";
import readline from "node:readline";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, screenshot] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin });
const answers = [];
let waiting = null;
lines.on("line", (l) => { if (waiting) { const w = waiting; waiting = null; w(l); } else answers.push(l); });
function ask(what) {
  console.log(`REQ ${what}`);
  return new Promise((resolve) => { if (answers.length) resolve(answers.shift()); else waiting = resolve; });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const failures = [];
function check(ok, what) { console.log(`${ok ? "ok  " : "FAIL"} ${what}`); if (!ok) failures.push(what); }

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "steadypg-chromium-"));
let browser;
try {
  // A fresh profile directory (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.STEADYPG_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 30000,
    viewport: { width: 1360, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = browser.pages()[0] || await browser.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "load", timeout: 15000 });

  await sleep(3500);
  const points = await page.$$eval("canvas", (cs) => cs.map((c) => Number(c.dataset.points || 0)));
  check(points.length === 4 && points.every((n) => n >= 3), `every chart has >= 3 points after 3.5 s (${points})`);
  check((await page.getAttribute("body", "data-ready")) === "1", "the page has rendered a snapshot");
  const age = await page.textContent("#age");
  check(/updated/.test(age) && !(await page.$("#age.stale")), `the update marker is fresh ("${age}")`);
  const badge = await page.textContent("#hosts .status");
  check(badge === "available", `the host badge reads available ("${badge}")`);

  // A load burst raises the QPS figure, which falls back once it ends.
  const before = Number((await page.textContent("#qps-value")).replace(/,/g, "")) || 0;
  const burst = ask("burst");
  let peak = 0;
  const t0 = Date.now();
  while (Date.now() - t0 < 3000) {
    peak = Math.max(peak, Number((await page.textContent("#qps-value")).replace(/,/g, "")) || 0);
    await sleep(200);
  }
  await burst;
  check(peak > Math.max(10, before * 5), `the QPS figure rose during the burst (before ${before}, peak ${peak})`);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-load.png") });
  let after = peak;
  const t1 = Date.now();
  while (Date.now() - t1 < 5000 && after > Math.max(5, peak / 10)) {
    await sleep(250);
    after = Number((await page.textContent("#qps-value")).replace(/,/g, "")) || 0;
  }
  check(after <= Math.max(5, peak / 10), `the QPS figure fell back after the burst (${after})`);
  await page.screenshot({ path: screenshot });

  // Stopping PostgreSQL turns the host badge to unavailable within 3 s.
  await ask("stop");
  const t2 = Date.now();
  let status = "";
  while (Date.now() - t2 < 3000) {
    status = await page.textContent("#hosts .status");
    if (status === "unavailable") break;
    await sleep(100);
  }
  const took = (Date.now() - t2) / 1000;
  check(status === "unavailable", `the host badge reads unavailable ${took.toFixed(1)} s after the stop ("${status}")`);
  await sleep(1200);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-outage.png") });
  check(errors.length === 0, `no console errors (${errors.join(" | ")})`);
} catch (e) {
  failures.push(String(e && e.stack || e));
} finally {
  if (browser) await browser.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(failures.length ? `RESULT fail: ${failures.join("; ")}` : "RESULT ok");
lines.close();
process.exit(failures.length ? 1 : 0);
