"""mapping review: conflicts and decisions

Revision ID: 0005_mapping_review
Revises: 0004_ingest
Create Date: 2026-11-25 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_mapping_review'
down_revision = '0004_ingest'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_mapping_conflict',
    sa.Column('conflict_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('system', sa.String(length=300), nullable=False),
    sa.Column('code', sa.String(length=200), nullable=False),
    sa.Column('detail', sa.String(length=300), nullable=False),
    sa.Column('element', sa.String(length=64), nullable=False),
    sa.Column('display', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('occurrences', sa.BigInteger(), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('samples', sa.Text(), nullable=False),
    sa.Column('sources', sa.Text(), nullable=False),
    sa.Column('institutions', sa.Text(), nullable=False),
    sa.Column('info', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('conflict_id', name=op.f('pk_hub_mapping_conflict')),
    sa.UniqueConstraint('kind', 'system', 'code', 'detail', name='uq_hub_mapping_conflict_key')
    )
    op.create_index('ix_hub_mapping_conflict_status', 'hub_mapping_conflict', ['status', 'kind', 'occurrences'],
                    unique=False)
    op.create_table('hub_mapping_decision',
    sa.Column('decision_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('conflict_id', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('reviewer', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('decision_id', name=op.f('pk_hub_mapping_decision'))
    )
    op.create_index('ix_hub_mapping_decision_conflict', 'hub_mapping_decision', ['conflict_id', 'decision_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_hub_mapping_decision_conflict', table_name='hub_mapping_decision')
    op.drop_table('hub_mapping_decision')
    op.drop_index('ix_hub_mapping_conflict_status', table_name='hub_mapping_conflict')
    op.drop_table('hub_mapping_conflict')
