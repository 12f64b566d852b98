# A script that defines handler(system, this, inputs) runs as a handler:
# inputs["config"] is the parsed config.json.
def handler(system, this, inputs):
    execution = system.execution()
    this.log(f"execution {execution['id']} of {execution['flow']}, config {inputs['config']}")
    return this.success("notified")
