from fastapi import APIRouter


def v2_router(runtime):  # replaced by the V2 implementation in progress
    return APIRouter()
