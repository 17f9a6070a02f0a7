"""recognition: catalogue, quality-control records, checks and decisions

Revision ID: 0008_recognition
Revises: 0007_downstream
Create Date: 2026-12-06 07:46:41
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_recognition'
down_revision = '0007_downstream'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_recognition_catalogue',
    sa.Column('catalogue_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('loaded_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('catalogue_pk', name=op.f('pk_hub_recognition_catalogue'))
    )
    op.create_table('hub_recognition_check',
    sa.Column('check_id', sa.String(length=36), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('check_day', sa.String(length=10), nullable=False),
    sa.Column('institution', sa.String(length=64), nullable=False),
    sa.Column('item_id', sa.String(length=64), nullable=True),
    sa.Column('requested', sa.String(length=300), nullable=False),
    sa.Column('person', sa.String(length=64), nullable=True),
    sa.Column('origin', sa.String(length=32), nullable=False),
    sa.Column('order_ref', sa.String(length=200), nullable=True),
    sa.Column('recognizable', sa.Integer(), nullable=False),
    sa.Column('result_ref', sa.String(length=200), nullable=True),
    sa.Column('performer', sa.String(length=64), nullable=True),
    sa.Column('price_fen', sa.BigInteger(), nullable=True),
    sa.Column('decision', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('checked_by', sa.String(length=200), nullable=False),
    sa.Column('clinician', sa.String(length=200), nullable=True),
    sa.Column('hook_instance', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('check_id', name=op.f('pk_hub_recognition_check'))
    )
    with op.batch_alter_table('hub_recognition_check', schema=None) as batch_op:
        batch_op.create_index('ix_hub_recognition_check_day', ['check_day', 'institution'], unique=False)
        batch_op.create_index('ix_hub_recognition_check_order', ['institution', 'order_ref'], unique=False)

    op.create_table('hub_recognition_decision',
    sa.Column('decision_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('check_id', sa.String(length=36), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=False),
    sa.Column('clinician', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('decision_pk', name=op.f('pk_hub_recognition_decision'))
    )
    with op.batch_alter_table('hub_recognition_decision', schema=None) as batch_op:
        batch_op.create_index('ix_hub_recognition_decision_check', ['check_id', 'decision_pk'], unique=False)

    op.create_table('hub_recognition_eqa',
    sa.Column('eqa_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('institution', sa.String(length=64), nullable=False),
    sa.Column('item_id', sa.String(length=64), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('scheme', sa.String(length=200), nullable=False),
    sa.Column('certificate', sa.String(length=200), nullable=False),
    sa.Column('recorded_by', sa.String(length=200), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('eqa_pk', name=op.f('pk_hub_recognition_eqa')),
    sa.UniqueConstraint('institution', 'item_id', 'year', name='uq_hub_recognition_eqa_result')
    )
    op.create_table('hub_recognition_stamp',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('counter', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_hub_recognition_stamp'))
    )
    # the one counter row exists from the start: writers lock it (FOR SHARE) and rule changes update it
    op.execute("INSERT INTO hub_recognition_stamp (name, counter) VALUES ('rules', 0)")


def downgrade() -> None:
    op.drop_table('hub_recognition_stamp')
    with op.batch_alter_table('hub_recognition_decision', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_recognition_decision_check')

    op.drop_table('hub_recognition_decision')
    op.drop_table('hub_recognition_eqa')
    with op.batch_alter_table('hub_recognition_check', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_recognition_check_order')
        batch_op.drop_index('ix_hub_recognition_check_day')

    op.drop_table('hub_recognition_check')
    op.drop_table('hub_recognition_catalogue')
