"""Agent harnesses run inside a sandbox (rl-rock's ``RockAgent``), configured by ``RockAgentConfig``."""

from rock.sdk.sandbox.agent.config import AgentBashCommand, RockAgentConfig
from rock.sdk.sandbox.agent.rock_agent import RockAgent

__all__ = ["AgentBashCommand", "RockAgent", "RockAgentConfig"]
