//! `apiary mcp …` (placeholder).
