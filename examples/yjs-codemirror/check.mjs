// Drives the page in headless Chromium: opens it, waits for the sync, types at the end of the
// text, prints what the page sees (text and the other people's cursors), saves a screenshot.
//
//   node check.mjs PAGE_URL "TEXT TO TYPE" [SCREENSHOT.png] [HOLD_SECONDS]
//
// HOLD_SECONDS keeps the page (and its cursor) in the room afterwards, so you can look at it
// from the duet editor.
//
// Uses the system's Chromium (playwright-core downloads no browser): CHROMIUM=/path overrides.
import { chromium } from 'playwright-core'

const [pageUrl, typed = 'typed in the browser\n', shot, hold = '0'] = process.argv.slice(2)
if (!pageUrl) {
  console.error('usage: node check.mjs PAGE_URL "TEXT" [SCREENSHOT.png] [HOLD_SECONDS]')
  process.exit(2)
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run']
})
try {
  const page = await browser.newPage({ viewport: { width: 760, height: 250 }, deviceScaleFactor: 2 })
  page.on('console', (m) => console.log('page console:', m.type(), m.text()))
  page.on('pageerror', (e) => console.log('page error:', e.message))
  await page.goto(pageUrl)
  await page.waitForFunction(() => window.duet?.provider.synced, null, { timeout: 10000 })
  console.log('synced; page text:', JSON.stringify(await page.evaluate(() => window.duet.ytext.toString())))

  await page.click('.cm-content')
  await page.keyboard.press('Control+End')
  await page.keyboard.type(typed, { delay: 20 })
  await page.waitForTimeout(500)
  console.log('after typing; page text:', JSON.stringify(await page.evaluate(() => window.duet.ytext.toString())))

  const peers = await page.evaluate(() => {
    const { Y, ydoc, provider } = window.duet
    const at = (rel) => rel ? Y.createAbsolutePositionFromRelativePosition(rel, ydoc)?.index ?? null : null
    const out = []
    provider.awareness.getStates().forEach((s, id) => {
      if (id !== ydoc.clientID) out.push({ name: s.user?.name, color: s.user?.color, cursor: at(s.cursor?.head) })
    })
    return out
  })
  console.log('other people:', JSON.stringify(peers))
  const carets = await page.$$eval('.cm-ySelectionInfo', (els) => els.map((e) => e.textContent))
  console.log('remote carets drawn by y-codemirror.next:', JSON.stringify(carets))

  if (shot) {
    // y-codemirror.next shows a caret's name on hover: hover the first remote caret.
    const caret = await page.$('.cm-ySelectionCaret')
    if (caret) await caret.hover()
    // Keep the local caret from blinking out of the picture.
    await page.addStyleTag({ content: '.cm-cursorLayer { animation: none !important; }' })
    await page.waitForTimeout(400)
    await page.screenshot({ path: shot })
    console.log('screenshot:', shot)
  }
  if (Number(hold) > 0) {
    console.log(`holding the page open for ${hold} s`)
    await page.waitForTimeout(Number(hold) * 1000)
  }
} finally {
  await browser.close()
}
