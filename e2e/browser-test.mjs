// Drives examples/web/index.html in Debian's Chromium against a running phone-verify.
//
//   node browser-test.mjs --page 'http://127.0.0.1:5500/?api=http://127.0.0.1:8080' \
//        --log /tmp/service.log --expect verified|unreachable --screenshot /tmp/shot.png
//
// --expect verified:    types a number, clicks "Send code", reads the code from the service's log (as a
//                       developer copies it from the console provider's line), tries a wrong code first
//                       (the page must show the problem's detail and `invalid_code`), then the right
//                       one, and requires the page to say "verified".
// --expect unreachable: the service does not allow this page's origin (CORS): the page must show an
//                       error containing "could not reach", never "verified", and no SMS may be sent.
// Exit status 0 on success, 1 on failure. .ci/browser.sh starts the page server and the service.
import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    page: { type: 'string' },
    log: { type: 'string' },
    expect: { type: 'string' },
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    timeout: { type: 'string', default: '15000' },
  },
});
if (!opt.page || !opt.log || !opt.screenshot || !['verified', 'unreachable'].includes(opt.expect)) {
  console.error('usage: browser-test.mjs --page URL --log FILE --expect verified|unreachable --screenshot FILE');
  process.exit(2);
}
const timeout = Number(opt.timeout);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => console.log(`  [browser:${opt.expect}] ${msg}`);

class Failure extends Error {}
function assert(cond, msg) {
  if (!cond) throw new Failure(msg);
  log(`ok    ${msg}`);
}

// The console provider logs: ... to=+*******1234 code="482913" body=...
async function codeFromLog(lastFour) {
  const pattern = new RegExp(`to=\\S*${lastFour} code="(\\d+)"`, 'g');
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const matches = [...readFileSync(opt.log, 'utf8').matchAll(pattern)];
    if (matches.length) return matches.at(-1)[1];
    await sleep(50);
  }
  return null;
}

// Clicks a button and waits until the page has shown the outcome (status class ok or error, button usable).
async function clickAndWait(page, button) {
  await page.click(button);
  await page.waitForFunction(
    (sel) => document.getElementById('status').className !== '' && !document.querySelector(sel).disabled,
    button, { timeout },
  );
  return (await page.textContent('#status')).trim();
}

const userDataDir = mkdtempSync(join(tmpdir(), 'pv-chromium-'));
const consoleLines = [];
let context;
let failed = false;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: opt.chromium,
    headless: true,
    timeout,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on('console', (m) => consoleLines.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));

  const pageUrl = new URL(opt.page);
  await page.goto(opt.page);
  log(`opened ${opt.page}`);
  const api = pageUrl.searchParams.get('api');
  if (api) assert((await page.inputValue('#api')) === api, `service URL field taken from ?api= (${api})`);

  const lastFour = String(1000 + Math.floor(Math.random() * 9000));
  const typed = `+1 (212) 555-${lastFour}`;
  await page.getByLabel('Phone number').fill(typed);
  const afterSend = await clickAndWait(page, '#send');
  log(`after "Send code": ${afterSend}`);

  if (opt.expect === 'verified') {
    assert(afterSend.includes('Code sent to +1212555' + lastFour), 'the page shows the code was sent');
    const code = await codeFromLog(lastFour);
    assert(code !== null, `code copied from the service log: ${code}`);
    // A wrong code first: the page must show the problem+json detail and code.
    const wrong = code.slice(0, -1) + String((Number(code.at(-1)) + 1) % 10);
    await page.getByLabel('Code').fill(wrong);
    const afterWrong = await clickAndWait(page, '#verify');
    log(`after "Verify" with a wrong code: ${afterWrong}`);
    assert(/^Error 400: .+ \(invalid_code\)$/.test(afterWrong) && !afterWrong.includes('verified'),
      'a wrong code shows the problem detail and its code (invalid_code)');
    await page.getByLabel('Code').fill(code);
    const afterVerify = await clickAndWait(page, '#verify');
    log(`after "Verify": ${afterVerify}`);
    assert(afterVerify.includes('verified'), 'the page shows "verified"');
  } else {
    assert(afterSend.toLowerCase().includes('could not reach'), 'the page shows "could not reach" after send');
    await page.getByLabel('Code').fill('123456');
    const afterVerify = await clickAndWait(page, '#verify');
    log(`after "Verify": ${afterVerify}`);
    assert(afterVerify.toLowerCase().includes('could not reach'), 'the page shows "could not reach" after verify');
    const body = await page.innerText('main'); // rendered text: not the script's strings
    assert(!body.includes('verified'), 'the page never says "verified"');
    assert(await page.isVisible('#status'), 'the error is visible');
    assert(!/console SMS provider/.test(readFileSync(opt.log, 'utf8')),
      'the browser blocked the calls: no SMS was sent');
  }
  await page.screenshot({ path: opt.screenshot, fullPage: true });
  log(`screenshot: ${opt.screenshot}`);
} catch (e) {
  failed = true;
  console.error(`  [browser:${opt.expect}] FAIL  ${e instanceof Failure ? e.message : e.stack || e}`);
  for (const line of consoleLines) console.error(`    ${line}`);
  try {
    const page = context?.pages()[0];
    if (page) {
      await page.screenshot({ path: opt.screenshot, fullPage: true });
      console.error(`  [browser:${opt.expect}] screenshot of the failure: ${opt.screenshot}`);
    }
  } catch { /* no screenshot */ }
} finally {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
