"""Agentic RL outside the sandbox: model-call records (trajectories) and their exports."""
