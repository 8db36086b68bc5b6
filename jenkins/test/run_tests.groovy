// Tests of jenkins/vars/canaryGate.groovy and jenkins/Jenkinsfile, with the real Groovy and the
// stubbed pipeline steps of Harness.groovy. Run by tests/test_jenkins.py:
//
//   groovy -cp jenkins/test jenkins/test/run_tests.groovy JENKINS_DIR
//
// Prints PASS/FAIL per test and "N passed, N failed"; exits 1 on any failure. Optional settings
// (environment): GATE_PYTHON (a Python with canary-gate: the Lambda mode's JUnit conversion runs
// for real), GATE_BIN + GATE_REAL_POLICY + GATE_REAL_DEPLOYED_AT + GATE_REAL_WORKSPACE (the step
// runs the real `gate check` in that workspace), GATE_TESTS (a regex: run only matching tests).

import groovy.json.JsonOutput
import groovy.json.JsonSlurperClassic

File jenkinsDir = new File(args ? args[0] : 'jenkins').canonicalFile
String only = System.getenv('GATE_TESTS')
String python = System.getenv('GATE_PYTHON')
int passed = 0
int failed = 0

def test = { String name, Closure body ->
    if (only && !(name =~ only)) {
        return
    }
    try {
        body()
        passed++
        println "PASS ${name}"
    } catch (Throwable t) {
        failed++
        println "FAIL ${name}\n    ${t.toString().replace('\n', '\n    ')}"
    }
}

File scratch = File.createTempFile('canary-gate-jenkins', '')
scratch.delete()
int workspaces = 0
def workspace = { ->
    File dir = new File(scratch, "ws${++workspaces}")
    dir.mkdirs()
    dir
}

def harness = { -> new Harness(jenkinsDir, workspace()) }

// The error a call fails with (null if it does not).
def failure = { Closure body ->
    try {
        body()
        return null
    } catch (PipelineAbort e) {
        return e.message
    }
}

Map VERDICT = [release: 'web-1.2.3', verdict: 'fail', reason: 'cpu: +40% vs baseline', deployed_at: '2024-05-01T10:00:00Z',
               evaluated_at: '2024-05-01T11:00:00Z', final: true, notes: [],
               metrics: [[name: 'cpu', verdict: 'fail', reason: '+40% vs baseline', rule: 'mean-above-tolerance',
                          canary: 56.0, baseline: 40.0, expected: null, effect: 0.4, interval: [0.3, 0.5],
                          tolerance: 0.1, critical: false, muted: false],
                         [name: 'latency', verdict: 'pass', reason: 'within tolerance', rule: 'mean-within-tolerance',
                          canary: 120.0, baseline: 119.0, expected: null, effect: 0.01, interval: [-0.02, 0.04],
                          tolerance: 0.1, critical: true, muted: false]]]

// A gate check stub: exits with `code`, leaving what `gate check --json --junit` leaves.
def gateExits = { Harness h, int code ->
    return { String script, Map a ->
        if (script.startsWith('date -u')) {
            return [status: 0, stdout: '2024-05-01T10:00:00Z\n']
        }
        if (script.contains(' check ')) {
            h.step_writeFile(file: 'canary-gate/web-1.2.3.json',
                             text: JsonOutput.toJson(VERDICT + [verdict: [0: 'pass', 1: 'fail', 3: 'inconclusive'][code] ?: 'fail']))
            return [status: code]
        }
        return [status: 0]
    }
}

Map ARGS = [release: 'web-1.2.3', policy: 'deploy/canary.yaml']

// -- the step, cli mode -------------------------------------------------------------------------

[0: 'pass', 1: 'fail', 3: 'inconclusive', 4: 'error', 2: 'error', 137: 'error'].each { int code, String expected ->
    test("step cli: gate check exit ${code} -> '${expected}'") {
        Harness h = harness()
        h.onSh = gateExits(h, code)
        assert h.runStep(ARGS) == expected
        Map call = h.calls.find { it.step == 'sh' && it.args[0].script.contains('gate check') }.args[0]
        assert call.returnStatus == true
        assert h.archived*.pattern == ['canary-gate/web-1.2.3.json']
        assert h.archived[0].files  // the verdict file was there to archive
        Map junit = h.calls.find { it.step == 'junit' }.args[0]
        assert junit.testResults == 'canary-gate/web-1.2.3.xml' && junit.allowEmptyResults
        assert junit.skipMarkingBuildUnstable  // the pipeline decides the build, not the report
        assert h.currentBuild.result == null  // the step returns the verdict, never fails the build
        assert h.logText().contains("canaryGate: release web-1.2.3: ${expected} (exit code ${code}")
        assert h.logText().contains('unexpected') == !(code in [0, 1, 3, 4])
    }
}

test('step cli: a pass from a demo source (replay, simulate) is an error unless allowDemo') {
    Harness h = harness()
    h.onSh = { String script, Map a ->
        if (script.contains(' check ')) {
            h.step_writeFile(file: 'canary-gate/web-1.2.3.json',
                             text: JsonOutput.toJson(VERDICT + [verdict: 'pass', demo: 'replay']))
            return [status: 0]
        }
        return [status: 0]
    }
    assert h.runStep(ARGS) == 'error'  // a recorded case judged no metric of this release
    assert h.logText().contains('demo source (replay)')
    assert h.runStep(ARGS + [allowDemo: true]) == 'pass'
}

test('step cli: the command runs gate check --watch with every option, each one shell word') {
    Harness h = harness()
    h.runStep(ARGS + [canary: 'version:1.2.3', baseline: 'version:stable', interval: '1m', lifetime: '2h',
                      deployedAt: '2024-05-01T10:00:00Z', store: 'gate.db', gate: '/opt/gate/bin/gate'])
    assert h.commands.size() == 2
    assert h.commands[0] == "mkdir -p 'canary-gate' && rm -f 'canary-gate/web-1.2.3.json' 'canary-gate/web-1.2.3.xml'"
    assert h.commands[1] == "/opt/gate/bin/gate check --policy 'deploy/canary.yaml' " +
        "--canary 'version:1.2.3' --baseline 'version:stable' --interval '1m' --lifetime '2h' " +
        "--deployed-at '2024-05-01T10:00:00Z' --store 'gate.db' " +
        "--watch --json --junit 'canary-gate/web-1.2.3.xml' -- 'web-1.2.3' > 'canary-gate/web-1.2.3.json'"
}

// Expected names written by gate.release.file_name (Python): the one rule, in both languages.
test('step: file names follow the Python rule; names it alters get a hash, so none collide') {
    Script step = harness().stepScript()
    Map expected = ['web-1.2.3': 'web-1.2.3', 'web/1.2': 'web_1.2-2f3e3ec8cb', 'web_1.2': 'web_1.2',
                    'web 1.2': 'web_1.2-fa062bc6b1', '../etc/passwd': 'etc_passwd-7fef78f534', '--help': '--help',
                    '.hidden_': 'hidden-5a700ea123', '\u00fcn\u00efcode-1': 'n_code-1-d029f94372',
                    ('x' * 151): ('x' * 139) + '-8eb827e696', '\u65e5\u672c': 'release-cf2abf0c5b']
    expected.each { String release, String name -> assert step.fileName(release) == name }
    assert expected.values().toSet().size() == expected.size()
}

test('step cli: hostile values reach the gate as single arguments, nothing injected (real sh)') {
    Harness h = harness()
    File fakeGate = h.file('fake-gate')
    // Prints its arguments, one per line, where the step sends the JSON verdict.
    fakeGate.text = '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n'
    fakeGate.setExecutable(true)
    String release = "x'; touch pwned; echo '\$(touch pwned2)`touch pwned3`\"\\"
    String policy = 'my policies/it\'s.yaml'
    h.onSh = { String script, Map a -> h.realSh(script) }
    assert h.runStep(release: release, policy: policy, canary: '$HOME', gate: fakeGate.path) == 'pass'
    String base = 'canary-gate/' + h.stepScript().fileName(release)
    List<String> words = h.file("${base}.json").readLines()
    assert words == ['check', '--policy', policy, '--canary', '$HOME', '--watch', '--json', '--junit', "${base}.xml",
                     '--', release]
    assert !h.workspace.list().any { it.startsWith('pwned') }
}

['release', 'policy'].each { String name ->
    test("step: missing '${name}' fails with a clear message, nothing runs") {
        Harness h = harness()
        assert failure { h.runStep(ARGS.findAll { it.key != name }) } == "canaryGate: missing required argument '${name}'"
        assert failure { h.runStep(ARGS + [(name): '']) } == "canaryGate: missing required argument '${name}'"
        assert h.commands.isEmpty()
    }
}

test('step: bad arguments fail with a clear message naming them') {
    Harness h = harness()
    assert failure { h.runStep(ARGS + [stateMachineArn: 'x']) }.startsWith("canaryGate: unknown argument 'stateMachineArn'")
    assert failure { h.runStep(ARGS + [mode: 'http']) } == "canaryGate: argument 'mode' must be 'cli' or 'lambda', got 'http'"
    assert failure { h.runStep(ARGS + [mode: 'lambda']) }.contains("exactly one of 'function'")
    assert failure { h.runStep(ARGS + [mode: 'lambda', function: 'f', stateMachine: 'arn:sm']) }.contains("exactly one of 'function'")
    assert failure { h.runStep(ARGS + [mode: 'lambda', function: 'f', lifetime: '2h']) }.contains("'interval' and 'lifetime' are cli-mode")
    assert failure { h.runStep(ARGS + [mode: 'lambda', function: 'f', pollSeconds: '1m']) }.contains("'pollSeconds' must be")
    assert h.commands.isEmpty()
}

// -- the step, lambda mode ------------------------------------------------------------------------

// An `aws lambda invoke` stub answering `answers` in turn (a Map: the payload; an Integer: the
// CLI's exit code); other commands (the JUnit conversion) run for real when GATE_PYTHON is set.
def lambdaAnswers = { Harness h, List answers ->
    return { String script, Map a ->
        if (script.contains(' lambda invoke ')) {
            Object answer = answers.remove(0)
            if (answer instanceof Integer) {
                return [status: answer]
            }
            Map payload = answer as Map
            h.step_writeFile(file: 'canary-gate/web-1.2.3.json', text: JsonOutput.toJson(payload.payload ?: payload))
            h.step_writeFile(file: 'canary-gate/web-1.2.3-invoke.json', text: JsonOutput.toJson(
                [StatusCode: 200, ExecutedVersion: '$LATEST'] + (payload.functionError ? [FunctionError: 'Unhandled'] : [:])))
            return [status: 0]
        }
        return python ? h.realSh(script) : [status: 0]
    }
}

Map LAMBDA = ARGS + [mode: 'lambda', function: 'canary-gate-analyzer', policy: 's3://bucket/web.yaml',
                     canary: 'version:1.2.3', region: 'eu-west-1', pollSeconds: 30] + (python ? [python: python] : [:])

test('step lambda function: invoked every pollSeconds until decisive, the JSON answer becomes JUnit') {
    Harness h = harness()
    Map waiting = VERDICT + [verdict: 'inconclusive', final: false, exit_code: 3]
    h.onSh = lambdaAnswers(h, [waiting, waiting, VERDICT + [exit_code: 1]])
    assert h.runStep(LAMBDA) == 'fail'
    List invokes = h.commands.findAll { it.contains('lambda invoke') }
    assert invokes.size() == 3
    assert invokes[0] == "aws --region 'eu-west-1' lambda invoke --output json --cli-read-timeout 900 --function-name 'canary-gate-analyzer' " +
        "--payload fileb://'canary-gate/web-1.2.3-event.json' 'canary-gate/web-1.2.3.json' > 'canary-gate/web-1.2.3-invoke.json'"
    // After the first answer, the event pins the deploy it judged (its deployed_at).
    assert new JsonSlurperClassic().parseText(h.file('canary-gate/web-1.2.3-event.json').text) ==
        [release: 'web-1.2.3', policy: 's3://bucket/web.yaml', canary: 'version:1.2.3',
         deployed_at: '2024-05-01T10:00:00Z']
    assert h.calls.findAll { it.step == 'sleep' }*.args == [[[time: 30, unit: 'SECONDS']], [[time: 30, unit: 'SECONDS']]]
    assert h.ran("-m gate.junit --output 'canary-gate/web-1.2.3.xml' --release='web-1.2.3' -- 'canary-gate/web-1.2.3.json'")
    if (python) {  // the conversion ran for real: one test case per metric, cpu failed
        Map report = h.junitReports[0]
        assert report.cases == ['cpu', 'latency'] && report.failures == ['cpu'] && report.suite == 'web-1.2.3'
    }
}

test('step lambda function: a final inconclusive answer ends the wait') {
    Harness h = harness()
    h.onSh = lambdaAnswers(h, [VERDICT + [verdict: 'inconclusive', final: true]])
    assert h.runStep(LAMBDA) == 'inconclusive'
    assert !h.calls.any { it.step == 'sleep' }
}

test('step lambda function: an error answer, a crashed function or a failed CLI is could-not-judge') {
    [[[release: 'web-1.2.3', verdict: 'error', error: 'could not judge: Datadog 403', exit_code: 4]],
     [[functionError: true, payload: [errorMessage: 'Task timed out after 900.00 seconds']]],
     [[payload: [verdict: 'maybe']]],
     [255]].each { List answers ->
        Harness h = harness()
        h.onSh = lambdaAnswers(h, answers)
        assert h.runStep(LAMBDA) == 'error'
        if (python && answers[0] instanceof Map) {  // the report says so rather than staying empty
            assert h.junitReports[0].failCount == 1 && h.junitReports[0].cases == ['canary gate']
        }
    }
}

// Records the event of every invocation, then answers as lambdaAnswers does.
def recordingAnswers = { Harness h, List answers, List events ->
    def answering = lambdaAnswers(h, answers)
    return { String script, Map a ->
        if (script.contains(' lambda invoke ')) {
            String file = (script =~ /fileb:\/\/'([^']+)'/)[0][1]
            events << new JsonSlurperClassic().parseText(h.file(file).text)
        }
        return answering(script, a)
    }
}

// An answer of the analyzer about the deploy that started at `deployedAt` (lambda/handler.py's
// `same_deploy`: the fields that ask about that deploy again).
def ofDeploy = { String deployedAt, Map answer ->
    answer + [deployed_at: deployedAt, same_deploy: [deployed_at: deployedAt]]
}

test('step lambda function: the first answer pins its deploy, every later invocation asks about it') {
    Harness h = harness()
    List events = []
    Map waiting = VERDICT + [verdict: 'inconclusive', final: false, exit_code: 3]
    h.onSh = recordingAnswers(h, [ofDeploy('2024-05-01T10:00:07Z', waiting), ofDeploy('2024-05-01T10:00:07Z', waiting),
                                  ofDeploy('2024-05-01T10:00:07Z', VERDICT)], events)
    assert h.runStep(LAMBDA) == 'fail'
    Map bare = [release: 'web-1.2.3', policy: 's3://bucket/web.yaml', canary: 'version:1.2.3']
    assert events == [bare, bare + [deployed_at: '2024-05-01T10:00:07Z'], bare + [deployed_at: '2024-05-01T10:00:07Z']]
}

test('step lambda function: an answer about another deploy (a redeploy meanwhile) is could-not-judge, never its pass') {
    Map waiting = VERDICT + [verdict: 'inconclusive', final: false, exit_code: 3]
    Map passing = VERDICT + [verdict: 'pass', exit_code: 0]
    [[waiting, passing], [waiting, waiting], [waiting, VERDICT]].each { List later ->
        Harness h = harness()
        h.onSh = lambdaAnswers(h, [ofDeploy('2024-05-01T10:00:00Z', later[0]), ofDeploy('2024-05-01T11:00:00Z', later[1])])
        assert h.runStep(LAMBDA) == 'error'
        assert h.logText().contains('canaryGate: the answer is about another deploy ({"deployed_at":"2024-05-01T11:00:00Z"}) ' +
                                    'than this build\'s ({"deployed_at":"2024-05-01T10:00:00Z"}): the release was redeployed')
        Map written = new JsonSlurperClassic().parseText(h.file('canary-gate/web-1.2.3.json').text) as Map
        assert written.verdict == 'error' && written.judged.deployed_at == '2024-05-01T11:00:00Z'
        assert h.calls.count { it.step == 'sleep' } == 1  // nothing asked after it
    }
}

test('step lambda function: a verdict that names no deploy is could-not-judge') {
    Harness h = harness()
    h.onSh = lambdaAnswers(h, [VERDICT.findAll { it.key != 'deployed_at' } + [verdict: 'pass', exit_code: 0]])
    assert h.runStep(LAMBDA) == 'error'
    assert h.logText().contains('canaryGate: the answer names no deploy')
}

test('step lambda function: the analyzer refusing the pinned deploy (redeployed) is could-not-judge, said in the log') {
    Harness h = harness()
    String refusal = 'deployed_at 2024-05-01T10:00:00Z contradicts release \'web-1.2.3\', registered as deployed at ' +
                     '2024-05-01T11:00:00Z with a canary window until 2024-05-01T12:00:00Z'
    h.onSh = lambdaAnswers(h, [ofDeploy('2024-05-01T10:00:00Z', VERDICT + [verdict: 'inconclusive', final: false]),
                               [statusCode: 400, release: 'web-1.2.3', verdict: 'error', exit_code: 4, error: refusal]])
    assert h.runStep(LAMBDA) == 'error'
    assert h.logText().contains("canaryGate: could not judge: ${refusal}")
}

test('step lambda function: a given deployedAt is sent as given, and answers of another deploy are refused too') {
    Harness h = harness()
    List events = []
    Map waiting = VERDICT + [verdict: 'inconclusive', final: false, exit_code: 3]
    h.onSh = recordingAnswers(h, [ofDeploy('2024-05-01T10:00:00Z', waiting),
                                  ofDeploy('2024-05-01T11:00:00Z', VERDICT + [verdict: 'pass'])], events)
    assert h.runStep(LAMBDA + [deployedAt: '1714557600']) == 'error'
    assert events*.deployed_at == ['1714557600', '1714557600']
}

// A describe-execution stub: RUNNING twice, then `status` with `output` (the state machine's
// output: {verdict, exit_code, answer}, as infra/template.yaml's GateLoop ends).
def executionEnds = { Harness h, String status, Object output, Map counter ->
    return { String script, Map a ->
        if (script.contains('start-execution')) {
            h.step_writeFile(file: 'canary-gate/web-1.2.3-start.txt', text: 'arn:aws:states:eu-west-1:1:execution:gate:abc\n')
            return [status: 0]
        }
        if (script.contains('describe-execution')) {
            counter.polls = (counter.polls ?: 0) + 1
            Map described = counter.polls < 3 ? [status: 'RUNNING'] :
                [status: status] + (output == null ? [:] : [output: output instanceof String ? output : JsonOutput.toJson(output)])
            h.step_writeFile(file: 'canary-gate/web-1.2.3-execution.json', text: JsonOutput.toJson(described))
            return [status: 0]
        }
        return python ? h.realSh(script) : [status: 0]
    }
}

Map STATE_MACHINE = LAMBDA.findAll { it.key != 'function' } + [stateMachine: 'arn:aws:states:eu-west-1:1:stateMachine:gate',
                                                               deployedAt: '2024-05-01T10:00:00Z']

test('step: examinePast reaches the gate as --examine-past (cli) and examine_past (lambda); not a boolean: refused') {
    Harness h = harness()
    h.runStep(ARGS + [deployedAt: '2017-05-24T15:42:00Z', examinePast: true])
    assert h.commands[1].contains("--deployed-at '2017-05-24T15:42:00Z' --examine-past --watch")
    h = harness()
    h.runStep(ARGS)
    assert !h.commands[1].contains('--examine-past')
    h = harness()
    h.onSh = executionEnds(h, 'SUCCEEDED', [verdict: 'pass', exit_code: 0, answer: VERDICT + [verdict: 'pass']], [:])
    h.runStep(STATE_MACHINE + [examinePast: true])
    assert new JsonSlurperClassic().parseText(h.file('canary-gate/web-1.2.3-event.json').text).examine_past == true
    h = harness()
    assert failure { h.runStep(ARGS + [examinePast: 'yes']) } == "canaryGate: 'examinePast' must be true or false, got 'yes'"
    assert h.commands.isEmpty()
}

test('step lambda state machine: start-execution with the bare event, poll describe-execution, the answer is the verdict') {
    [['SUCCEEDED', 'pass', 0], ['SUCCEEDED', 'fail', 1], ['SUCCEEDED', 'inconclusive', 3]].each { String status, String expected, int code ->
        Harness h = harness()
        Map counter = [:]
        Map answer = VERDICT + [verdict: expected, exit_code: code, interval_seconds: 60]
        h.onSh = executionEnds(h, status, [verdict: expected, exit_code: code, answer: answer], counter)
        assert h.runStep(STATE_MACHINE) == expected
        assert counter.polls == 3
        assert h.ran("stepfunctions start-execution --state-machine-arn 'arn:aws:states:eu-west-1:1:stateMachine:gate' " +
                     "--input file://'canary-gate/web-1.2.3-event.json' --query executionArn --output text " +
                     "> 'canary-gate/web-1.2.3-start.txt'")
        assert h.ran("stepfunctions describe-execution --execution-arn 'arn:aws:states:eu-west-1:1:execution:gate:abc'")
        // The state machine's input is the analyzer's event itself: no wrapper, no `now`.
        assert new JsonSlurperClassic().parseText(h.file('canary-gate/web-1.2.3-event.json').text) ==
            [release: 'web-1.2.3', policy: 's3://bucket/web.yaml', canary: 'version:1.2.3', deployed_at: '2024-05-01T10:00:00Z']
        // The archived JSON is the analyzer's answer, not the execution's wrapper.
        assert new JsonSlurperClassic().parseText(h.file('canary-gate/web-1.2.3.json').text) == answer
        assert h.calls.findAll { it.step == 'sleep' }*.args == [[[time: 30, unit: 'SECONDS']], [[time: 30, unit: 'SECONDS']]]
        assert !h.ran('stop-execution')  // it ended by itself
        if (python) {  // gate.junit read the answer: one test case per metric
            Map report = h.junitReports[0]
            assert report.cases == ['cpu', 'latency'] && report.suite == 'web-1.2.3'
            assert report.failures == ['cpu']  // per metric, as the answer says
        }
    }
}

test('step lambda state machine: could-not-judge answers, failed executions and bad outputs are errors') {
    Map couldNotJudge = [release: 'web-1.2.3', verdict: 'error', statusCode: 503, error: 'could not judge: Datadog 503', exit_code: 4]
    [['SUCCEEDED', [verdict: 'error', exit_code: 4, answer: couldNotJudge]],
     ['SUCCEEDED', VERDICT + [verdict: 'pass', exit_code: 0]],  // a bare verdict is not the state machine's output
     ['SUCCEEDED', 'not json'],
     ['FAILED', null], ['TIMED_OUT', null], ['ABORTED', null]].each { String status, Object output ->
        Harness h = harness()
        h.onSh = executionEnds(h, status, output, [:])
        assert h.runStep(STATE_MACHINE) == 'error'
        Map written = new JsonSlurperClassic().parseText(h.file('canary-gate/web-1.2.3.json').text) as Map
        assert written.verdict == 'error'
        if (python) {  // the report says so rather than staying empty
            assert h.junitReports[0].failCount == 1 && h.junitReports[0].cases == ['canary gate']
        }
    }
}

test('step lambda state machine: a refused start-execution returns error, as the contract says') {
    [[status: 254], [status: 0, text: ''], [status: 0, text: 'None\n']].each { Map start ->
        Harness h = harness()
        h.onSh = { String script, Map a ->
            if (script.contains('start-execution')) {
                if (start.text != null) {
                    h.step_writeFile(file: 'canary-gate/web-1.2.3-start.txt', text: start.text)
                }
                return [status: start.status]
            }
            return python ? h.realSh(script) : [status: 0]
        }
        assert h.runStep(STATE_MACHINE) == 'error'
        assert !h.commands.any { it.contains('describe-execution') }
        Map written = new JsonSlurperClassic().parseText(h.file('canary-gate/web-1.2.3.json').text) as Map
        assert written.verdict == 'error' && written.error == 'state machine execution not started'
    }
}

test('step lambda state machine: an aborted build, a crash or a lost watch stops the execution, then ends as it ended') {
    String stop = "stepfunctions stop-execution --execution-arn 'arn:aws:states:eu-west-1:1:execution:gate:abc' " +
                  "--error CanaryGate.PipelineStopped"
    // The build aborted in `sleep` (FlowInterruptedException): before, the loop ran on for up to 8
    // days and set the canary's traffic after the pipeline had rolled back.
    Harness h = harness()
    Closure running = executionEnds(h, 'RUNNING', null, [:])
    h.onSh = { String script, Map a -> script.contains('stop-execution') ? [status: 0] : running(script, a) }
    h.onSleep = { Object a -> throw new FlowInterrupted('Aborted by alice') }
    FlowInterrupted aborted = null
    try {
        h.runStep(STATE_MACHINE)
    } catch (FlowInterrupted e) {
        aborted = e
    }
    assert aborted?.message == 'Aborted by alice'
    assert h.commands.findIndexOf { it.contains(stop) } > h.commands.findLastIndexOf { it.contains('describe-execution') }
    assert h.logText().contains('canaryGate: stopped arn:aws:states:eu-west-1:1:execution:gate:abc')
    // Any other failure while watching (the agent lost, an `sh` that throws): stopped, rethrown.
    h = harness()
    h.onSh = { String script, Map a ->
        if (script.contains('describe-execution')) {
            throw new PipelineAbort('agent went offline')
        }
        return script.contains('stop-execution') ? [status: 0] : executionEnds(h, 'RUNNING', null, [:])(script, a)
    }
    assert failure { h.runStep(STATE_MACHINE) } == 'agent went offline'
    assert h.ran(stop)
    // describe-execution refused: the step gives up watching ('error'), so the loop is stopped too;
    // a refused stop says what to stop by hand.
    h = harness()
    h.onSh = { String script, Map a ->
        if (script.contains('describe-execution') || script.contains('stop-execution')) {
            return [status: 254]
        }
        return executionEnds(h, 'RUNNING', null, [:])(script, a)
    }
    assert h.runStep(STATE_MACHINE) == 'error'
    assert h.ran(stop)
    assert h.logText().contains('canaryGate: aws stepfunctions stop-execution failed (exit code 254): stop ' +
                                'arn:aws:states:eu-west-1:1:execution:gate:abc by hand')
}

// -- the Jenkinsfile ---------------------------------------------------------------------------------

// Runs the Jenkinsfile with `gate check` exiting `code`; every other command succeeds.
def pipeline = { Map options ->
    Harness h = harness()
    h.params.putAll(options.params ?: [RELEASE: 'web-1.2.3'])
    Map credentials = [:]
    h.onSh = { String script, Map a ->
        if (options.failing && script.contains(options.failing)) {
            return [status: 1]
        }
        if (options.interrupt && script.contains(options.interrupt)) {
            throw new FlowInterrupted(options.interruptedBy as String)
        }
        if (script.contains(' check ')) {
            credentials.putAll(h.env.values.subMap(['DD_API_KEY', 'DD_APP_KEY']))
            if (options.crash) {
                throw new IOException(options.crash as String)
            }
        }
        return gateExits(h, options.code as int)(script, a)
    }
    if (options.input) {
        h.onInput = options.input
    }
    String result = h.runJenkinsfile()
    [h: h, result: result, credentials: credentials]
}

test('Jenkinsfile: pass -> promote, build SUCCESS, summary') {
    Map run = pipeline(code: 0)
    Harness h = run.h
    assert run.result == 'SUCCESS'
    assert h.stagesRun == ['Canary', 'Build', 'Deploy canary and baseline', 'Canary gate', 'Promote']
    assert h.stagesSkipped == ['Pre-flight', 'Override', 'Roll back']
    // promote waits for the instance refresh, then scales the canary and baseline down: one run finishes it.
    assert h.commands.findAll { it.contains('gate promote') } ==
        ['gate promote --policy "$GATE_POLICY" --wait --timeout 3h -- "$RELEASE"']
    assert !h.ran('gate rollback')
    // The deploy time recorded after the deploy: a re-run of the release is never judged on an earlier canary.
    assert h.ran("gate check --policy 'deploy/canary-policy.yaml' --canary 'version:web-1.2.3' --baseline 'version:stable' --deployed-at '2024-05-01T10:00:00Z'")
    assert h.ran(" -- 'web-1.2.3' > ")
    assert run.credentials == [DD_API_KEY: '****', DD_APP_KEY: '****']  // the gate ran with the Datadog keys bound
    assert h.env.RELEASE == 'web-1.2.3' && h.env.GATE_VERDICT == 'pass'
    assert h.currentBuild.description == 'web-1.2.3: gate pass, promote, build SUCCESS'
    assert h.logText().contains('Canary summary: web-1.2.3: gate pass, promote, build SUCCESS')
    assert h.inputs.isEmpty()
}

[1: 'fail', 3: 'inconclusive', 4: 'error', 2: 'error', 137: 'error'].each { int code, String verdict ->
    test("Jenkinsfile: gate exit ${code} ('${verdict}') -> roll back, build FAILURE") {
        Map run = pipeline(code: code)
        Harness h = run.h
        assert run.result == 'FAILURE'
        assert h.ran('gate rollback --policy "$GATE_POLICY" -- "$RELEASE"') && !h.ran('gate promote')
        assert h.commands.count { it.contains('gate rollback') } == 1  // not again in post
        assert h.stagesRun == ['Canary', 'Build', 'Deploy canary and baseline', 'Canary gate', 'Roll back']
        assert h.logText().contains("Canary gate: '${verdict}' for web-1.2.3: the canary was rolled back")
        assert h.currentBuild.description == "web-1.2.3: gate ${verdict}, rollback, build FAILURE"
        assert h.inputs.isEmpty()  // no override unless asked for
    }
}

test('Jenkinsfile: override offered and approved within the timeout -> promote, build UNSTABLE') {
    Map run = pipeline(code: 1, params: [RELEASE: 'web-1.2.3', OFFER_OVERRIDE: true], input: { Map a -> 'alice' })
    Harness h = run.h
    assert h.inputs.size() == 1 && h.inputs[0].insideTimeout
    assert h.inputs[0].args.message.contains("The canary gate says 'fail' for web-1.2.3")
    assert h.calls.find { it.step == 'timeout' }.args[0] == [time: 15, unit: 'MINUTES']
    assert h.ran('gate promote') && !h.ran('gate rollback')
    assert run.result == 'UNSTABLE'
    assert h.currentBuild.description == 'web-1.2.3: gate fail, promote (overridden by alice), build UNSTABLE'
}

[timeout: new FlowInterrupted('Timeout has been exceeded'),
 abort: new FlowInterrupted('Rejected by bob')].each { String what, Exception thrown ->
    test("Jenkinsfile: override offered, ${what} -> roll back, build FAILURE") {
        Map run = pipeline(code: 4, params: [RELEASE: 'web-1.2.3', OFFER_OVERRIDE: true], input: { Map a -> throw thrown })
        Harness h = run.h
        assert h.inputs.size() == 1 && h.inputs[0].insideTimeout
        assert h.ran('gate rollback') && !h.ran('gate promote')
        assert run.result == 'FAILURE'
        assert h.logText().contains("No override (${thrown}): rolling back.")
    }
}

test('Jenkinsfile: the gate step crashing is could-not-judge -> roll back, build FAILURE') {
    Map run = pipeline(code: 0, crash: 'agent went offline')
    Harness h = run.h
    assert h.logText().contains('agent went offline')
    assert h.ran('gate rollback') && !h.ran('gate promote')
    assert run.result == 'FAILURE'
    assert h.currentBuild.description == 'web-1.2.3: gate error, rollback, build FAILURE'
}

test('Jenkinsfile: an empty RELEASE parameter names the release after the build') {
    Map run = pipeline(code: 0, params: [RELEASE: ''])
    assert run.h.env.RELEASE == 'app-42'
    assert run.h.ran(" -- 'app-42' > ")
}

test('Jenkinsfile: the pre-flight, when asked, runs gate plan before the deploy and goes on when it is ok') {
    Map run = pipeline(code: 0, params: [RELEASE: 'web-1.2.3', PREFLIGHT: true, CANARY_SHARE: '0.05'])
    Harness h = run.h
    assert run.result == 'SUCCESS'
    assert h.stagesRun == ['Canary', 'Build', 'Pre-flight', 'Deploy canary and baseline', 'Canary gate', 'Promote']
    int plan = h.commands.findIndexOf { it.contains('gate plan') }
    assert h.commands[plan] == 'gate plan --policy "$GATE_POLICY" --canary-share "$CANARY_SHARE" -- "$RELEASE"'
    assert plan < h.commands.findIndexOf { it.contains('deploy.sh canary') }
}

[[3, 'cannot be judged within its'], [4, 'gate plan could not answer (exit 4)']].each { int code, String said ->
    test("Jenkinsfile: a pre-flight exiting ${code} deploys nothing and rolls back nothing") {
        Harness h = harness()
        h.params.putAll([RELEASE: 'web-1.2.3', PREFLIGHT: true, CANARY_SHARE: '0.01'])
        h.onSh = { String script, Map a -> script.contains('gate plan') ? [status: code] : gateExits(h, 0)(script, a) }
        assert h.runJenkinsfile() == 'FAILURE'
        assert !h.ran('deploy.sh') && !h.ran('gate check') && !h.ran('gate rollback') && !h.ran('gate promote')
        assert h.logText().contains(said)
        assert h.currentBuild.description == 'web-1.2.3: gate not run, no action, build FAILURE'
    }
}

test('Jenkinsfile: a failed canary deploy skips the gate and rolls back in post') {
    Map run = pipeline(code: 0, failing: 'deploy.sh canary')
    Harness h = run.h
    assert run.result == 'FAILURE'
    assert h.stagesSkipped == ['Pre-flight', 'Canary gate', 'Override', 'Promote', 'Roll back']
    assert !h.ran('gate check') && h.ran('gate rollback') && !h.ran('gate promote')
    assert h.currentBuild.description == 'web-1.2.3: gate not run, rollback, build FAILURE'
}

[['aborted by hand while the gate waits', ' check ', 'Aborted by alice', 'gate error'],
 ['the pipeline timeout firing while the gate waits', ' check ', 'Timeout has been exceeded', 'gate error'],
 ['the pipeline timeout firing during the deploy', 'deploy.sh baseline', 'Timeout has been exceeded', 'gate not run']].each {
    String what, String where, String cause, String gate ->
    test("Jenkinsfile: ${what} -> roll back in post, build ABORTED") {
        Map run = pipeline(code: 0, interrupt: where, interruptedBy: cause)
        Harness h = run.h
        assert run.result == 'ABORTED'
        assert h.commands.count { it.contains('gate rollback --policy "$GATE_POLICY" -- "$RELEASE"') } == 1
        assert !h.ran('gate promote')
        assert h.currentBuild.description == "web-1.2.3: ${gate}, rollback, build ABORTED"
    }
}

test('Jenkinsfile: aborted before the deploy rolls back nothing') {
    Map run = pipeline(code: 0, interrupt: 'build.sh', interruptedBy: 'Aborted by alice')
    assert run.result == 'ABORTED'
    assert run.h.commands == ['./scripts/build.sh "$RELEASE"']
    assert run.h.currentBuild.description == 'web-1.2.3: gate not run, no action, build ABORTED'
}

test('Jenkinsfile: a failed build deploys nothing and rolls back nothing') {
    Map run = pipeline(code: 0, failing: 'build.sh')
    assert run.result == 'FAILURE'
    assert run.h.commands == ['./scripts/build.sh "$RELEASE"']
    assert run.h.currentBuild.description == 'web-1.2.3: gate not run, no action, build FAILURE'
}

test('Jenkinsfile: a failed rollback still fails the build, never promotes') {
    Map run = pipeline(code: 1, failing: 'gate rollback')
    assert run.result == 'FAILURE'
    assert !run.h.ran('gate promote')
    assert run.h.commands.count { it.contains('gate rollback') } == 1
}

test('Jenkinsfile: promote has its own timeout, longer than the gate\'s --timeout, outside the canary\'s 4 h') {
    Map run = pipeline(code: 0)
    Harness h = run.h
    // No pipeline-wide timeout: it would cut the wait for the instance refresh short.
    assert !h.pipelineOptions.any { it[0] == 'timeout' }
    assert h.stageOptions['Canary'] == [['timeout', [[time: 4, unit: 'HOURS']]]]
    assert h.stageOptions['Promote'] == [['timeout', [[time: 200, unit: 'MINUTES']]]]
    String promote = h.commands.find { it.contains('gate promote') }
    int gateMinutes = ((promote =~ /--timeout (\d+)h/)[0][1] as int) * 60
    assert gateMinutes < 200  // the gate gives up first: exit 4, with what it applied recorded
    // The build, the deploy, the gate and the override are inside the canary's timeout; promote is not.
    assert h.stagesRun.indexOf('Canary') < h.stagesRun.indexOf('Build')
    assert h.stageOptions.keySet().containsAll(['Canary', 'Promote'])
}

test('Jenkinsfile: promote --wait failing (refresh failed or timed out, exit 4) -> build FAILURE, nothing rolled back') {
    Map run = pipeline(code: 0, failing: 'gate promote')
    Harness h = run.h
    assert run.result == 'FAILURE'
    assert h.ran('gate promote') && !h.ran('gate rollback')  // a person looks: no blind rollback
    assert h.currentBuild.description == 'web-1.2.3: gate pass, promote, build FAILURE'
}

test('Jenkinsfile: the roll back stage has its own timeout') {
    Map run = pipeline(code: 1)
    assert run.h.stageOptions['Roll back'] == [['timeout', [[time: 30, unit: 'MINUTES']]]]
}

// -- the step running the real gate ---------------------------------------------------------------

// -- traffic steps (rollout: true) ----------------------------------------------------------------

test('step cli rollout: runs gate rollout --watch --json, the JSON answer becomes JUnit') {
    Harness h = harness()
    h.onSh = { String script, Map a ->
        if (script.contains(' rollout ')) {
            h.step_writeFile(file: 'canary-gate/web-1.2.3.json', text: JsonOutput.toJson(VERDICT + [verdict: 'pass']))
            return [status: 0]
        }
        return python ? h.realSh(script) : [status: 0]
    }
    assert h.runStep(ARGS + [rollout: true, canary: 'version:1.2.3', deployedAt: '2024-05-01T10:00:00Z']) == 'pass'
    assert h.commands[1] == "gate rollout --policy 'deploy/canary.yaml' --canary 'version:1.2.3' " +
        "--deployed-at '2024-05-01T10:00:00Z' --watch --json -- 'web-1.2.3' > 'canary-gate/web-1.2.3.json'"
    assert h.ran("-m gate.junit --output 'canary-gate/web-1.2.3.xml' --release='web-1.2.3' -- 'canary-gate/web-1.2.3.json'")
}

test('step rollout: bad arguments are refused with a clear message, nothing runs') {
    Harness h = harness()
    assert failure { h.runStep(ARGS + [rollout: 'yes']) } == "canaryGate: 'rollout' must be true or false, got 'yes'"
    assert failure { h.runStep(ARGS + [rollout: true, lifetime: '2h']) }.contains("do not go with 'rollout'")
    assert h.commands.isEmpty()
}

// A rollout look's answer (gate.rollout.Look.to_dict): inconclusive while steps remain.
def look = { String status, Integer step, Integer next, String verdict = 'inconclusive' ->
    VERDICT + [verdict: verdict, final: verdict != 'inconclusive', exit_code: [pass: 0, fail: 1, inconclusive: 3][verdict],
               rollout: [status: status, step: step, of: 3, next_step: next]]
}

test('step lambda function rollout: a passed step is followed by one invocation that moves to the next') {
    Harness h = harness()
    List events = []
    def answers = lambdaAnswers(h, [look('ready', 0, 1), look('started', 1, null), look('passed', 1, 2),
                                    look('advanced', 2, null), look('rolled_back', 0, null, 'fail')])
    h.onSh = { String script, Map a ->
        if (script.contains(' lambda invoke ')) {
            String file = (script =~ /fileb:\/\/'([^']+)'/)[0][1]
            events << new JsonSlurperClassic().parseText(h.file(file).text)
        }
        return answers(script, a)
    }
    assert h.runStep(LAMBDA + [rollout: true]) == 'fail'
    Map bare = [release: 'web-1.2.3', policy: 's3://bucket/web.yaml', canary: 'version:1.2.3', rollout: true]
    Map pinned = bare + [deployed_at: '2024-05-01T10:00:00Z']  // the deploy of the first answer, from then on
    assert events == [bare, pinned + [rollout_step: 1], pinned, pinned + [rollout_step: 2], pinned]
    assert h.calls.count { it.step == 'sleep' } == 2  // after each step taken
    assert h.logText().contains('canaryGate: traffic step 2 taken')
}

test('step lambda function rollout: a step change answered for another deploy is could-not-judge') {
    Harness h = harness()
    h.onSh = lambdaAnswers(h, [ofDeploy('2024-05-01T10:00:00Z', look('passed', 1, 2)),
                               ofDeploy('2024-05-01T11:00:00Z', look('advanced', 2, null))])
    assert h.runStep(LAMBDA + [rollout: true]) == 'error'
    assert !h.calls.any { it.step == 'sleep' }
}

test('step lambda function rollout: a refused step change is could-not-judge') {
    Harness h = harness()
    h.onSh = lambdaAnswers(h, [look('passed', 1, 2), [release: 'web-1.2.3', verdict: 'error', exit_code: 4,
                                                     error: 'the weights were changed by someone else']])
    assert h.runStep(LAMBDA + [rollout: true]) == 'error'
}

test('Jenkinsfile: TRAFFIC_STEPS -> the gate steps the traffic (gate rollout), a pass promotes') {
    Harness h = harness()
    h.params.putAll([RELEASE: 'web-1.2.3', TRAFFIC_STEPS: true])
    h.onSh = { String script, Map a ->
        if (script.contains(' rollout ')) {
            h.step_writeFile(file: 'canary-gate/web-1.2.3.json', text: JsonOutput.toJson(VERDICT + [verdict: 'pass']))
            return [status: 0]
        }
        return gateExits(h, 0)(script, a)
    }
    assert h.runJenkinsfile() == 'SUCCESS'
    assert h.ran("gate rollout --policy 'deploy/canary-policy.yaml' --canary 'version:web-1.2.3'")
    assert !h.ran('gate check') && h.ran('gate promote')
}

if (System.getenv('GATE_BIN')) {
    test('step cli with the real gate: the verdict, the JSON and the JUnit report agree') {
        Harness h = new Harness(jenkinsDir, new File(System.getenv('GATE_REAL_WORKSPACE')))
        h.onSh = { String script, Map a -> h.realSh(script) }
        String verdict = h.runStep(release: 'web-1.2.3', policy: System.getenv('GATE_REAL_POLICY'),
                                   deployedAt: System.getenv('GATE_REAL_DEPLOYED_AT'), examinePast: true,
                                   store: 'gate.db',
                                   gate: System.getenv('GATE_BIN'))
        Map json = new JsonSlurperClassic().parseText(h.file('canary-gate/web-1.2.3.json').text) as Map
        assert verdict == json.verdict
        Map report = h.junitReports[0]
        assert report.suite == 'web-1.2.3 DEMO (replay)'  // a replayed case, not a live release: said so
        assert report.cases == json.metrics*.name
        assert report.failures == json.metrics.findAll { it.verdict == 'fail' }*.name
        println "    real gate: ${verdict}: ${json.reason}"
    }

    test('step cli with the real gate: a release named --help is refused (error), never help and a pass') {
        Harness h = new Harness(jenkinsDir, new File(System.getenv('GATE_REAL_WORKSPACE')))
        h.onSh = { String script, Map a -> h.realSh(script) }
        String verdict = h.runStep(release: '--help', policy: System.getenv('GATE_REAL_POLICY'),
                                   deployedAt: System.getenv('GATE_REAL_DEPLOYED_AT'), store: 'gate.db',
                                   gate: System.getenv('GATE_BIN'))
        assert verdict == 'error'
        assert h.logText().contains('canaryGate: release --help: error (exit code 4)')
        // The JUnit report says the gate could not judge, and why.
        assert h.junitReports[0].failures == ['canary gate']
        assert h.file('canary-gate/--help.xml').text.contains("must not start with '-'")
    }
}

// GATE_FAKE_AWS: a command standing for `aws` whose `lambda invoke` runs the real analyzer
// (tests/fake_aws_lambda.py), GATE_FAKE_POLICY its policy (JSON): tests/test_jenkins.py sets them.
if (System.getenv('GATE_FAKE_AWS')) {
    test('step lambda function with the real analyzer: a redeploy between two polls is never judged by this build') {
        Harness h = harness()
        String fakeAws = System.getenv('GATE_FAKE_AWS')
        h.onSh = { String script, Map a -> h.realSh(script.startsWith('aws ') ? fakeAws + script.substring(3) : script) }
        Map policy = new JsonSlurperClassic().parseText(System.getenv('GATE_FAKE_POLICY')) as Map
        // allowDemo: the simulated source stands for a live one here (a pass must be the step's to judge).
        String verdict = h.runStep(release: 'web-7', mode: 'lambda', function: 'canary-gate-analyzer', policy: policy,
                                   pollSeconds: 60, python: python ?: 'python3', allowDemo: true)
        println "    real analyzer: ${verdict}: ${h.logText().readLines().findAll { it.startsWith('canaryGate:') }.join(' | ')}"
        assert verdict == 'error'
        assert h.logText().contains("canaryGate: could not judge: deployed_at 2024-05-06T12:00:00Z contradicts release 'web-7'")
    }
}

scratch.deleteDir()
println "${passed} passed, ${failed} failed"
System.exit(failed || !passed ? 1 : 0)
