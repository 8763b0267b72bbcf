// The unmodified JavaScript SDKs (`e2b`, `@e2b/code-interpreter`, from npm) against ROCK: directory
// watching as envd reports it, the list filters, and a quiet cell under runCode's timeouts.
// Configured as a user would (E2B_API_KEY, E2B_API_URL, E2B_SANDBOX_URL); prints its OK line.
const { Sandbox } = require('@e2b/code-interpreter')

function check(ok, what) {
  if (!ok) throw new Error('check failed: ' + what)
}

async function until(predicate, what, ms = 20000) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (predicate()) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error('gave up waiting for ' + what)
}

const index = (events, type, name, from = 0) => events.findIndex((e, i) => i >= from && e.type === type && e.name === name)

async function watching(sbx) {
  const dir = '/tmp/watched'
  await sbx.files.makeDir(dir + '/sub')
  const events = []
  const handle = await sbx.files.watchDir(dir, (e) => events.push({ type: e.type, name: e.name }), { recursive: true, timeoutMs: 0 })
  try {
    // one command, so nothing waits between the steps: a file that lives a few milliseconds,
    // quick writes, chmod, a rename, a remove, and a file in a subdirectory. (Two writes in a row to
    // one file may be one event: the kernel merges an event equal to the last one not yet read,
    // for envd's watcher too; so the writes here alternate between files.)
    const script = 'cd ' + dir + ' && echo x > short && rm short && touch a && echo 1 >> a && echo 1 >> c && ' +
      'echo 2 >> a && chmod 600 a && mv a b && echo y > sub/deep && rm b && touch done'
    await sbx.commands.run(script)
    await until(() => index(events, 'create', 'done') >= 0, 'the last event, in ' + JSON.stringify(events))
    const seq = [['create', 'short'], ['write', 'short'], ['remove', 'short'], ['create', 'a'], ['write', 'a'],
      ['write', 'c'], ['write', 'a'], ['chmod', 'a'], ['rename', 'a'], ['create', 'b'], ['create', 'sub/deep'],
      ['write', 'sub/deep'], ['remove', 'b'], ['create', 'done']]
    let at = 0
    for (const [type, name] of seq) {  // in this order, each once at least (a rename: its old name, then the new one created)
      const found = index(events, type, name, at)
      check(found >= 0, type + ' ' + name + ' after event ' + at + ' in ' + JSON.stringify(events))
      at = found + 1
    }
    // a file written through the SDK is created and written under its own name, as envd does it
    await sbx.files.write(dir + '/sdk.txt', 'hello')
    await until(() => index(events, 'write', 'sdk.txt') >= 0, 'sdk.txt written, in ' + JSON.stringify(events))
    check(index(events, 'create', 'sdk.txt') >= 0 && index(events, 'create', 'sdk.txt') < index(events, 'write', 'sdk.txt'),
      'sdk.txt created before it is written: ' + JSON.stringify(events))
  } finally {
    await handle.stop()
  }
}

async function listing(sbx, tag, before) {
  const ids = async (query) => (await Sandbox.list({ query: { metadata: { suite: tag }, ...query } }).nextItems()).map((s) => s.sandboxId)
  check(JSON.stringify(await ids({})) === JSON.stringify([sbx.sandboxId]), 'metadata alone finds it')
  check((await ids({ startedAfter: before })).includes(sbx.sandboxId), 'startedAfter before its start finds it')
  check((await ids({ startedAfter: new Date(Date.now() + 3600e3) })).length === 0, 'startedAfter in an hour finds nothing')
  check((await ids({ state: ['running'] })).includes(sbx.sandboxId), 'state running finds it')
  check((await ids({ state: ['paused'] })).length === 0, 'state paused does not find a running sandbox')
  // keys and values with characters a query string encodes (each is url-encoded, then the whole again)
  const odd = await Sandbox.list({ query: { metadata: { 'odd key': 'a&b=c d%' } } }).nextItems()
  check(odd.map((s) => s.sandboxId).includes(sbx.sandboxId), 'metadata with &, =, % and spaces matches')
  const wrong = await Sandbox.list({ query: { metadata: { 'odd key': 'a&b=c' } } }).nextItems()
  check(!wrong.map((s) => s.sandboxId).includes(sbx.sandboxId), 'a different value does not match')
}

async function quietCells(sbx) {
  // A cell that prints nothing for longer than its timeoutMs: the client's execution timeout, not a
  // request timeout (the response head came at once).
  let error = null
  try {
    await sbx.runCode('import time\ntime.sleep(60)', { timeoutMs: 2000 })
  } catch (e) {
    error = e
  }
  check(error && error.name === 'TimeoutError' && /Execution timed out/.test(error.message), 'execution timeout: ' + error)
  // A quiet cell longer than the request timeout completes: the request timeout covers only the head.
  const done = await sbx.runCode('import time\ntime.sleep(3)\n40 + 2', { requestTimeoutMs: 1500, timeoutMs: 30000 })
  check(done.text === '42' && !done.error, 'the quiet cell completes: ' + JSON.stringify(done))
}

async function main() {
  const tag = 'js-' + process.pid + '-' + Date.now()
  const before = new Date(Date.now() - 1000)
  const sbx = await Sandbox.create({ metadata: { suite: tag, 'odd key': 'a&b=c d%' }, timeoutMs: 300000 })
  try {
    await watching(sbx)
    await listing(sbx, tag, before)
    await quietCells(sbx)
  } finally {
    await sbx.kill()
  }
  console.log('E2B JS OK')
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e)
  process.exit(1)
})
