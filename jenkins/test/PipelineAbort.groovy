// What `error` and a failing `sh` throw in Jenkins (hudson.AbortException): the build fails.
class PipelineAbort extends RuntimeException {
    PipelineAbort(String message) { super(message) }
}
