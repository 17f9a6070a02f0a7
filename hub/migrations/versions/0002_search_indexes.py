"""typed search indexes: string, date, number, uri and reference rows; reindex progress

Existing resources get their new index rows with ``hub reindex`` after upgrading.

Revision ID: 0002_search_indexes
Revises: 0001_fhir_store
Create Date: 2026-11-25 10:32:21.992198
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_search_indexes'
down_revision = '0001_fhir_store'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_reindex_job',
    sa.Column('job', sa.String(length=100), nullable=False),
    sa.Column('last_pk', sa.BigInteger(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('started', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('job', name=op.f('pk_hub_reindex_job'))
    )
    op.create_table('hub_idx_date',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('low', sa.BigInteger(), nullable=False),
    sa.Column('high', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['res_pk'], ['hub_resource.res_pk'], name=op.f('fk_hub_idx_date_res_pk_hub_resource'), ondelete='CASCADE')
    )
    with op.batch_alter_table('hub_idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_hub_idx_date_high', ['resource_type', 'param', 'high', 'low', 'res_pk'], unique=False)
        batch_op.create_index('ix_hub_idx_date_low', ['resource_type', 'param', 'low', 'high', 'res_pk'], unique=False)
        batch_op.create_index('ix_hub_idx_date_res', ['res_pk', 'param'], unique=False)

    op.create_table('hub_idx_number',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('low', sa.Float(), nullable=False),
    sa.Column('high', sa.Float(), nullable=False),
    sa.Column('system', sa.Text(), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['res_pk'], ['hub_resource.res_pk'], name=op.f('fk_hub_idx_number_res_pk_hub_resource'), ondelete='CASCADE')
    )
    with op.batch_alter_table('hub_idx_number', schema=None) as batch_op:
        batch_op.create_index('ix_hub_idx_number_low', ['resource_type', 'param', 'low', 'high', 'res_pk'], unique=False)
        batch_op.create_index('ix_hub_idx_number_res', ['res_pk', 'param'], unique=False)

    op.create_table('hub_idx_reference',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=False),
    sa.Column('target_id', sa.String(length=64), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['res_pk'], ['hub_resource.res_pk'], name=op.f('fk_hub_idx_reference_res_pk_hub_resource'), ondelete='CASCADE')
    )
    with op.batch_alter_table('hub_idx_reference', schema=None) as batch_op:
        batch_op.create_index('ix_hub_idx_reference_res', ['res_pk', 'param'], unique=False)
        batch_op.create_index('ix_hub_idx_reference_target', ['target_id', 'target_type', 'param', 'resource_type', 'res_pk'], unique=False)
        batch_op.create_index('ix_hub_idx_reference_url', ['url', 'param', 'resource_type', 'res_pk'], unique=False)

    op.create_table('hub_idx_string',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('value_norm', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=False),
    sa.Column('value_exact', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['res_pk'], ['hub_resource.res_pk'], name=op.f('fk_hub_idx_string_res_pk_hub_resource'), ondelete='CASCADE')
    )
    with op.batch_alter_table('hub_idx_string', schema=None) as batch_op:
        batch_op.create_index('ix_hub_idx_string_res', ['res_pk', 'param'], unique=False)
        batch_op.create_index('ix_hub_idx_string_value', ['resource_type', 'param', 'value_norm', 'res_pk'], unique=False)

    op.create_table('hub_idx_uri',
    sa.Column('res_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['res_pk'], ['hub_resource.res_pk'], name=op.f('fk_hub_idx_uri_res_pk_hub_resource'), ondelete='CASCADE')
    )
    with op.batch_alter_table('hub_idx_uri', schema=None) as batch_op:
        batch_op.create_index('ix_hub_idx_uri_res', ['res_pk', 'param'], unique=False)
        batch_op.create_index('ix_hub_idx_uri_value', ['resource_type', 'param', 'value', 'res_pk'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('hub_idx_uri', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_idx_uri_value')
        batch_op.drop_index('ix_hub_idx_uri_res')

    op.drop_table('hub_idx_uri')
    with op.batch_alter_table('hub_idx_string', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_idx_string_value')
        batch_op.drop_index('ix_hub_idx_string_res')

    op.drop_table('hub_idx_string')
    with op.batch_alter_table('hub_idx_reference', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_idx_reference_url')
        batch_op.drop_index('ix_hub_idx_reference_target')
        batch_op.drop_index('ix_hub_idx_reference_res')

    op.drop_table('hub_idx_reference')
    with op.batch_alter_table('hub_idx_number', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_idx_number_res')
        batch_op.drop_index('ix_hub_idx_number_low')

    op.drop_table('hub_idx_number')
    with op.batch_alter_table('hub_idx_date', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_idx_date_res')
        batch_op.drop_index('ix_hub_idx_date_low')
        batch_op.drop_index('ix_hub_idx_date_high')

    op.drop_table('hub_idx_date')
    op.drop_table('hub_reindex_job')
