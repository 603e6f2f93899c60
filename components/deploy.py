"""Endpoint deployment: the champion onto a Vertex AI endpoint, smoke-tested before it takes traffic."""

from kfp import dsl
from kfp.dsl import Artifact, Output
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def deploy_champion(
    registry_uri: str,
    model_name: str,
    deploy_endpoint: str,
    deploy_options: dict,
    deployment: Output[Artifact],
) -> str:
    """Deploy the registry's champion to a Vertex AI endpoint; traffic moves only after a smoke request.

    sklearn champions run on the prebuilt scikit-learn container, oss-lora ones on an LLM serving image
    (vLLM); hosted models are served by their provider and skipped. The previous deployment is undeployed
    once the new one has the traffic. A champion already serving is a no-op; a failed smoke request
    fails this task and leaves the endpoint as it was.

    Args:
        registry_uri: Registry root (a gs:// file registry or vertex://...).
        model_name: Registry model name.
        deploy_endpoint: ``vertex://PROJECT/REGION/ENDPOINT_NAME`` (created if missing).
        deploy_options: Serving settings: machine_type, min/max_replica_count, accelerator_type/count,
            sklearn_image, llm_image, smoke_instances, keep_previous.
        deployment: What happened (action, version, endpoint, deployed model id, smoke answers).

    Returns:
        ``deployed``, ``already-serving`` or ``skipped``.
    """
    import json

    from tuneloop.deploy import deploy_champion as deploy

    result = deploy(registry_uri, model_name, deploy_endpoint, deploy_options)
    with open(deployment.path, "w") as f:
        json.dump(result.to_dict(), f, indent=2, sort_keys=True)
    deployment.metadata.update(action=result.action, version=result.version, endpoint=result.endpoint)
    return result.action
