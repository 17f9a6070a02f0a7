"""telediagnosis: configuration, reading tasks, readers' loads, intake queue

Revision ID: 0009_telediagnosis
Revises: 0008_recognition
Create Date: 2026-12-06 10:27:48
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009_telediagnosis'
down_revision = '0008_recognition'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_tele_config',
    sa.Column('config_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('loaded_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('config_pk', name=op.f('pk_hub_tele_config'))
    )
    op.create_table('hub_tele_intake',
    sa.Column('intake_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('enqueued', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('intake_pk', name=op.f('pk_hub_tele_intake'))
    )
    op.create_table('hub_tele_reader',
    sa.Column('role_id', sa.String(length=64), nullable=False),
    sa.Column('on_shift', sa.Boolean(), nullable=False),
    sa.Column('shift_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('open_tasks', sa.Integer(), nullable=False),
    sa.Column('shift_assigned', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('role_id', name=op.f('pk_hub_tele_reader'))
    )
    op.create_table('hub_tele_task',
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('focus', sa.String(length=200), nullable=False),
    sa.Column('order_ref', sa.String(length=200), nullable=True),
    sa.Column('patient', sa.String(length=200), nullable=True),
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('center_id', sa.String(length=64), nullable=False),
    sa.Column('modality', sa.String(length=16), nullable=False),
    sa.Column('body_site', sa.String(length=64), nullable=True),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reader', sa.String(length=64), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sla_level', sa.Integer(), nullable=False),
    sa.Column('next_escalation', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claim_expires', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('report', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('task_id', name=op.f('pk_hub_tele_task')),
    sa.UniqueConstraint('focus', name=op.f('uq_hub_tele_task_focus'))
    )
    with op.batch_alter_table('hub_tele_task', schema=None) as batch_op:
        batch_op.create_index('ix_hub_tele_task_claim_expires', ['claim_expires'], unique=False)
        batch_op.create_index('ix_hub_tele_task_created', ['created'], unique=False)
        batch_op.create_index('ix_hub_tele_task_next_escalation', ['next_escalation'], unique=False)
        batch_op.create_index('ix_hub_tele_task_order', ['order_ref'], unique=False)
        batch_op.create_index('ix_hub_tele_task_reader', ['reader', 'state'], unique=False)
        batch_op.create_index('ix_hub_tele_task_state', ['center_id', 'state', 'priority'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('hub_tele_task', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_tele_task_state')
        batch_op.drop_index('ix_hub_tele_task_reader')
        batch_op.drop_index('ix_hub_tele_task_order')
        batch_op.drop_index('ix_hub_tele_task_next_escalation')
        batch_op.drop_index('ix_hub_tele_task_created')
        batch_op.drop_index('ix_hub_tele_task_claim_expires')
    op.drop_table('hub_tele_task')
    op.drop_table('hub_tele_reader')
    op.drop_table('hub_tele_intake')
    op.drop_table('hub_tele_config')
