// What an aborted `input` or an expired `timeout` throws in Jenkins (FlowInterruptedException).
class FlowInterrupted extends RuntimeException {
    FlowInterrupted(String message) { super(message) }
}
