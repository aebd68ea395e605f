"""Chapter: deploy the version and start a real relevo server on a free loopback port."""

from __future__ import annotations

from relevo.datasets import CHURN_ID
from relevo.demo.story import DEPLOYMENT, Chapter, Demo, need
from relevo.server.background import BackgroundServer


def run(demo: Demo) -> None:
    version = need(demo.version, "register")
    # no bake period: a second run of the demo swaps its new version in under the same name,
    # and an alert of the first run's traffic (a p99 on a busy machine) must not roll it back
    # mid-story; the rollout chapters show promotion and rollback on deployments of their own
    deployment = demo.rv.deployments.deploy(DEPLOYMENT, version.ref, key=CHURN_ID, bake_seconds=0)
    demo.view.say(
        f"Deployment [bold]{deployment.name}[/] serves [bold]{deployment.model_ref}[/] "
        f"(revision {deployment.revision}), routing key [bold]{CHURN_ID}[/]: logged with every "
        "prediction, not a model input."
    )
    server = BackgroundServer(demo.settings)
    demo.on_close(server.stop)  # whatever happens next, the server stops and its log flushes
    with demo.view.status("starting the server"):
        url = server.start()
        server.wait_until_serving(DEPLOYMENT, version.ref)
    demo.server = server
    demo.summary["server_url"] = url
    demo.view.say(
        f"The relevo server (FastAPI on uvicorn) answers at [bold]{url}[/]: JSON API, "
        "Open Inference Protocol V2 and /metrics; the prediction log is written in the background."
    )


CHAPTER = Chapter(
    key="serve",
    title="Serve",
    why="Deploy churn:N as the deployment churn, and start the server business systems call.",
    run=run,
)
